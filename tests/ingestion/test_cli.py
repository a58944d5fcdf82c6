"""The `python -m ingestion` command as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb")}


def test_unknown_source_is_a_usage_error(env: dict[str, str]) -> None:
    result = run_cli("customers", env=env)
    assert result.returncode == 2
    assert "unknown source 'customers'" in result.stderr


def test_missing_inbox_fails_that_source_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("users", "--inbox", str(tmp_path / "nowhere"), env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "nowhere" in errors[0] and f"--inbox {tmp_path / 'nowhere'}" in errors[0]
    assert "Traceback" not in result.stderr
    assert "| users | failed |" in result.stdout


def test_missing_folder_names_the_setting_in_effect(env: dict[str, str], tmp_path: Path) -> None:
    """Without --inbox the folder comes from config or env: the error names that key."""
    env = {**env, "SOURCES__USERS__FOLDER": str(tmp_path / "elsewhere")}
    result = run_cli("users", env=env)
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "elsewhere" in error and "sources.users.folder" in error
    assert "--inbox" not in error


def test_locked_warehouse_names_the_holder_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    warehouse = env["WAREHOUSE_PATH"]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('ready', flush=True); sys.stdin.read()",  # holds until killed
            warehouse,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = run_cli("users", "--inbox", str(tmp_path), env=env)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"locked by PID {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".dlt-pipelines").exists()

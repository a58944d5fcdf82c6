"""The run's dbt child (pipeline/dbt_ahead.py): it imports dbt only when ingestion says rows
are coming, and then is the `dbt` command, with the run's environment of the moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DBT = str(Path(sys.executable).with_name("dbt"))


def dbt_child(
    woken: bool, command: list[str] | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Start the child as a run does, wake it (a byte) or not (the pipe's end), then send it
    `command` with `env`, or close its stdin."""
    wake, loading = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline.dbt_ahead", str(wake)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(wake,),
        text=True,
    )
    os.close(wake)
    if woken:
        os.write(loading, b"1")
    os.close(loading)
    asked = json.dumps({"argv": command, "env": env or dict(os.environ)}) + "\n" if command else ""
    out, err = child.communicate(asked, timeout=120)
    return subprocess.CompletedProcess(command or [], child.returncode, out, err)


def test_unused_it_says_whether_it_imported_dbt() -> None:
    assert dbt_child(woken=False, command=None).returncode == 0  # never imported
    assert dbt_child(woken=True, command=None).returncode == 3  # imported in vain


def test_it_is_the_dbt_command_with_the_environment_it_is_sent(tmp_path: Path) -> None:
    profiles = str(tmp_path / "profiles-of-this-run")
    env = {**os.environ, "DBT_PROFILES_DIR": profiles}
    for woken in (True, False):  # not woken: it imports dbt once asked
        done = dbt_child(woken, [DBT, "debug", "--config-dir"], env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(profiles)

    missing = [DBT, "parse", "--project-dir", str(tmp_path / "missing")]
    by_hand = subprocess.run(missing, capture_output=True, text=True, timeout=120)
    done = dbt_child(True, missing)
    assert done.returncode == by_hand.returncode == 2
    assert done.stderr == by_hand.stderr

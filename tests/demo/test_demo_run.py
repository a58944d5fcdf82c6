"""`python -m demo` (what `make run` does), its output sent to a file as `make run > run.log`
would: sample data, the demo API, one gated run, a short plain log that ends with the
step table, the published path and why names are null and emails hashed there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from project_env import ROOT, warehouse_env

pytestmark = pytest.mark.slow


def test_demo_run_publishes_and_says_where(tmp_path: Path) -> None:
    env = warehouse_env(tmp_path)
    env.pop("ANALYTICS_PATH", None)
    env.pop("SOURCES__ORDERS__API_TOKEN")  # the demo brings its own API and token
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--inbox", str(tmp_path / "inbox"), "--users", "200"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    log = done.stdout
    assert done.returncode == 0, log[-3000:]
    assert "\x1b" not in log
    assert len(log.splitlines()) <= 40
    lines = log.strip().splitlines()
    table = lines.index("| step | status | seconds | detail |")
    summary = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert [line.split(" | ")[1] for line in lines[table + 2 : summary]] == ["ok"] * 4
    analytics = tmp_path / "analytics.duckdb"
    assert lines[summary].endswith(f"published {analytics}")
    note = " ".join(lines[summary + 1 :])
    assert "names are null and emails hashed" in note and str(analytics) in note
    with duckdb.connect(str(analytics), read_only=True) as con:
        names, hashed = con.execute(
            "select count(name), count(*) filter (where regexp_full_match(email, '[0-9a-f]{64}'))"
            " from marts.dim_users"
        ).fetchone()
        users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    assert names == 0 and 0 < hashed <= users

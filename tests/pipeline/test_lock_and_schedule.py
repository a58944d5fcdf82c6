"""The writer lock, the ledger of failed runs and `--every`: no dbt needed, seconds each."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pipeline_sites import Site, site_env
from project_env import ROOT

from warehouse.lock import LockBusy, WarehouseLock, read_holder

HOLDER = """
import sys
from pathlib import Path
from warehouse.lock import WarehouseLock
lock = WarehouseLock(Path(sys.argv[1]))
lock.acquire(0, {"pid": __import__("os").getpid(), "command": "holder", "started_at": "T0"})
print("locked", flush=True)
sys.stdin.read()  # holds the lock until killed
"""


def start_holder(warehouse: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_names_its_holder_waits_and_dies_with_it(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    holder = start_holder(warehouse)
    try:
        lock = WarehouseLock(warehouse)
        with pytest.raises(LockBusy) as busy:
            lock.acquire(0, {"pid": 1})
        assert str(busy.value).startswith(
            f"another run (PID {holder.pid}, started at T0, holder) holds the warehouse"
        )
        started = time.monotonic()
        with pytest.raises(LockBusy):
            lock.acquire(0.6, {"pid": 1})
        assert time.monotonic() - started >= 0.6
    finally:
        holder.kill()  # SIGKILL: the kernel drops the flock, no stale lock survives
        holder.wait()
    lock.acquire(0, {"pid": 2, "step": "ingest"})
    assert read_holder(lock.path) == {"pid": 2, "step": "ingest"}
    lock.update(step="build")
    assert read_holder(lock.path) == {"pid": 2, "step": "build"}
    lock.release()
    assert read_holder(lock.path) is None


def test_a_command_waiting_for_the_lock_is_seen_by_the_holder_until_it_has_it(
    tmp_path: Path,
) -> None:
    """--follow takes the lock for one batch after another: it asks `others_waiting` first,
    so a run waiting with --wait gets its turn instead of losing every race."""
    warehouse = tmp_path / "warehouse.duckdb"
    follower = WarehouseLock(warehouse)
    assert not follower.others_waiting()  # no queue file yet
    follower.acquire(0, {"pid": 1, "command": "follow"})
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(warehouse)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stderr is not None
        assert waiter.stderr.readline().startswith("waiting up to 600 s")  # it queued
        assert follower.others_waiting()
        follower.release()
        assert waiter.stdout is not None and waiter.stdout.readline().strip() == "locked"
        assert not follower.others_waiting()  # it holds the lock: it waits no more
        assert follower.take(0.0, "follow", "ingest") is not None
    finally:
        waiter.kill()
        waiter.wait()
    assert follower.take(0.0, "follow", "ingest") is None


WAITER = """
import sys
from pathlib import Path
from warehouse.lock import WarehouseLock
lock = WarehouseLock(Path(sys.argv[1]))
lock.acquire(600, {"pid": 2, "command": "run"})
print("locked", flush=True)
sys.stdin.read()
"""


def test_run_exits_at_once_when_the_lock_is_held(tmp_path: Path) -> None:
    site = Site(tmp_path, tmp_path / "inbox", site_env(tmp_path))
    holder = start_holder(site.warehouse)
    try:
        done = site.pipeline("run", "--sources", "users")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: another run (PID {holder.pid}, started at T0, holder) holds the "
        f"warehouse {site.warehouse}; wait for it to finish or pass --wait SECONDS"
    )
    assert not site.warehouse.exists()  # it never touched the warehouse


def test_ingestion_and_monitor_write_only_under_the_lock(tmp_path: Path) -> None:
    """Every writer takes the one lock: busy -> exit 1 naming the holder, nothing written."""
    site = Site(tmp_path, tmp_path / "inbox", site_env(tmp_path))
    (site.inbox / "users").mkdir(parents=True)
    (site.inbox / "users" / "users_1.csv").write_text(
        "user_id,email,signup_date,country,updated_at\n1,a@x.io,2026-01-01,DE,2026-01-01\n"
    )
    ingest = [sys.executable, "-m", "ingestion", "users", "--inbox", str(site.inbox)]
    busy = f"another run (PID {{}}, started at T0, holder) holds the warehouse {site.warehouse}"
    holder = start_holder(site.warehouse)
    try:
        for command in (ingest, [sys.executable, "-m", "monitoring"]):
            done = subprocess.run(command, cwd=ROOT, env=site.env, capture_output=True, text=True)
            assert done.returncode == 1
            assert done.stderr.startswith("error: " + busy.format(holder.pid)), done.stderr
            assert len(done.stderr.strip().splitlines()) == 1
        assert not site.warehouse.exists()
        assert not (tmp_path / ".dlt-pipelines").exists()  # dlt's folder untouched too
        waiting = subprocess.Popen(
            [*ingest, "--wait", "600"],
            cwd=ROOT,
            env=site.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        told = waiting.stderr.readline()  # it says it waits, then waits for the holder
        assert told.startswith(f"waiting up to 600 s for the run holding {site.warehouse}")
        assert f"(PID {holder.pid}, holder)" in told
        assert waiting.poll() is None
    finally:
        holder.kill()
        holder.wait()
    out, errors = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, out + told + errors
    assert "| users | ok | 1 | 1 | 0 |" in out
    assert read_holder(site.lock) is None  # released when it ended


def test_every_keeps_its_schedule_after_failed_runs_and_status_lists_them(tmp_path: Path) -> None:
    site = Site(tmp_path, tmp_path / "missing-inbox", site_env(tmp_path))
    started = time.monotonic()
    done = site.pipeline(
        "run", "--sources", "users", "--inbox", str(site.inbox), "--every", "2s", "--runs", "2"
    )
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started >= 2.0
    assert done.stdout.count("next run at") == 1
    rows = site.ledger()
    assert [(r["command"], r["status"], r["ingest_status"], r["build_status"]) for r in rows] == [
        ("run", "failed", "failed", "skipped"),
        ("run", "failed", "failed", "skipped"),
    ]
    assert all(r["published"] is False and r["finished_at"] for r in rows)
    # Slots are 2 s apart; the ledger stamps a run when it takes the lock, a little later.
    assert rows[1]["started_at"] - rows[0]["started_at"] >= timedelta(seconds=1.9)
    assert not site.analytics.exists()
    status = site.pipeline("status")
    assert status.returncode == 0
    lines = [line for line in status.stdout.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # header + 2 runs
    assert " failed " in lines[1] and "| no |" in lines[1]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    site = Site(tmp_path, tmp_path, site_env(tmp_path))
    assert site.pipeline("run", "--every", "soon").returncode == 2
    assert site.pipeline("run", "--runs", "2").returncode == 2
    assert site.pipeline("run", "--sources", "nope").returncode == 2
    assert site.pipeline("backfill", "--start", "2026-01-05", "--end", "2026-01-01").returncode == 2
    assert site.pipeline("features", "--as-of", "x", "--out", str(tmp_path / "f")).returncode == 2

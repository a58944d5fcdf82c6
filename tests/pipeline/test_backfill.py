"""Backfill of an event-time range: equals a full refresh on it, resumes after kill -9."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import duckdb
import pytest
from pipeline_sites import Site, kill9, site_env, wait_for
from project_env import LOADED_FILES, copy_state

pytestmark = pytest.mark.slow

RANGE = ("--start", "2026-01-05", "--end", "2026-01-06", "--batch", "1d")  # 2 daily slices


def rows(warehouse: Path, table: str, where: str = "true") -> list[tuple[object, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return sorted(con.execute(f"select * from {table} where {where}").fetchall(), key=repr)
    finally:
        con.close()


def test_backfill_equals_full_refresh_and_resumes(
    published: Site, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "site"
    copy_state(published.root, root, LOADED_FILES)
    env = site_env(root)
    site = Site(root, published.inbox, env)
    # the published build was the warehouse's first: its incremental tables are a full
    # refresh's rows, which the backfill must reproduce on its range
    expected_events = rows(site.warehouse, "staging.stg_events__events")
    in_range = "occurred_at >= '2026-01-05' and occurred_at < '2026-01-07'"
    con = duckdb.connect(str(site.warehouse))
    lost = con.execute(f"delete from staging.stg_events__events where {in_range}").fetchone()
    con.execute("update staging.stg_events__events set value = -1 where occurred_at < '2026-01-05'")
    con.close()
    assert lost[0] > 0

    first = site.start("backfill", *RANGE, "--no-publish")
    running.append(first)
    wait_for(lambda: site.holder().get("step") == "slice 2/2", 600, "slice 2", first)
    kill9(first)

    second = site.pipeline("backfill", *RANGE, "--no-publish")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming backfill" in second.stdout and "1 of 2 slices done" in second.stdout
    assert re.search(r"^slice 1\s+skipped\s+0\.0s\s+done earlier$", second.stdout, re.M)
    # Inside the range: exactly the full refresh's rows; outside: untouched (still damaged).
    window = [r for r in expected_events if "2026-01-05" <= str(r[5])[:10] <= "2026-01-06"]
    assert len(window) == lost[0]
    assert rows(site.warehouse, "staging.stg_events__events", in_range) == window
    before = rows(site.warehouse, "staging.stg_events__events", "occurred_at < '2026-01-05'")
    assert before and all(r[3] == -1 for r in before)
    after = rows(site.warehouse, "staging.stg_events__events", "occurred_at >= '2026-01-07'")
    # (rows with no occurred_at, quarantined as invalid_timestamp, are in no range)
    assert after == [r for r in expected_events if r[5] and str(r[5])[:10] >= "2026-01-07"]
    # Downstream was rebuilt from the backfilled table: fct_events has the range's events again.
    events_in_range = rows(site.warehouse, "marts.fct_events", in_range)
    valid = [r for r in window if r[6] == "valid"]  # the event_status column
    assert valid and sorted(r[0] for r in events_in_range) == sorted(r[0] for r in valid)
    batches = rows(site.warehouse, "monitoring.pipeline_backfill_batches")
    assert len({b[0] for b in batches}) == 1  # one backfill, resumed
    assert [(str(b[5])[:10], b[7]) for b in sorted(batches, key=lambda b: b[5])] == [
        ("2026-01-05", "ok"),
        ("2026-01-06", "ok"),
    ]
    statuses = [r["status"] for r in site.ledger()]
    assert statuses[-2:] == ["abandoned", "succeeded"]


def test_backfill_refuses_models_that_cannot_take_a_range(site: Site) -> None:
    done = site.pipeline("backfill", *RANGE, "--select", "dim_users")
    assert done.returncode == 1
    assert "backfill needs dbt microbatch models or incremental models tagged" in done.stderr
    assert "selected others: dim_users" in done.stderr
    assert site.ledger()[-1]["status"] == "failed"

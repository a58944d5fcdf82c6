"""Scoped checks: a run with new rows tests those rows (and probes their keys against
the whole table); a full check, when asked for or due, tests every row."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from pipeline_sites import VARS, Site, clone, sha256

from pipeline.publish import publication
from pipeline.scope import CadenceError, full_check_cadence, full_check_due

pytestmark = pytest.mark.slow


def new_segment(site: Site, *events: dict[str, Any]) -> None:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (site.inbox / "events" / "events-999999.jsonl").write_text(lines)


def failures(site: Site) -> dict[str, tuple[str, int]]:
    """Status and failing rows of two tests on fct_events: its key, and its categories."""
    results = json.loads((site.root / "target" / "run_results.json").read_text())["results"]
    found = {}
    for r in results:
        name = r["unique_id"].split(".")[2]
        for test in ("accepted_values_fct_events_category", "unique_fct_events_event_id"):
            if name.startswith(test.rsplit("_", 1)[0]):
                found[test] = (r["status"], r["failures"])
    return found


def last_run(site: Site) -> dict[str, Any]:
    row = site.ledger()[-1]
    return {**row, "scope": json.loads(row["detail"])["build_scope"]}


def test_a_scoped_run_tests_its_new_rows_and_probes_their_keys(
    published: Site, tmp_path: Path
) -> None:
    site = clone(published, tmp_path / "site", with_inbox=True)
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(site.warehouse)) as con:
        # an old row of a category user_features does not count: outside the new rows
        old = con.execute(
            "select event_id from staging.stg_events__events where event_status = 'valid'"
            " order by loaded_at, segment, segment_line limit 2"
        ).fetchall()
        con.execute(
            "update staging.stg_events__events set category = 'signup' where event_id = ?", old[0]
        )
        # a new copy of an old valid event, in raw and (as valid) in the stored table,
        # as a faulty load or merge would leave it: only the key probe can see it
        con.execute(
            "insert into raw.events select * replace ("
            " 'tampered.jsonl' as _segment, 1 as _line, ?::timestamptz as _loaded_at)"
            " from raw.events where event_id = ?",
            [now.replace(tzinfo=UTC), old[1][0]],
        )
        con.execute(
            "insert into staging.stg_events__events select * replace ("
            " 'tampered.jsonl' as segment, 1 as segment_line, ?::timestamp as loaded_at)"
            " from staging.stg_events__events where event_id = ?",
            [now, old[1][0]],
        )
    new_segment(
        site,
        {"event_id": "evt-new-1", "user_id": 1, "category": "click", "value": 1.5,
         "occurred_at": "2026-01-20T10:00:00Z"},
        # a new row of another such category: fct_events' accepted_values test warns
        {"event_id": "evt-new-2", "user_id": 1, "category": "refund", "value": 2.5,
         "occurred_at": "2026-01-20T11:00:00Z"},
    )  # fmt: skip
    site.full_check_done_now()
    before = publication(site.analytics)

    done = site.run()
    assert done.returncode == 1, done.stdout[-3000:]
    run = last_run(site)
    assert (run["check_kind"], run["build_status"], run["published"]) == ("scoped", "failed", False)
    assert json.loads(run["detail"])["dbt_child"] == "ran dbt"  # started with the run
    assert run["scope"]["select"] == ["source:events.events+"]
    assert run["scope"]["checked_since"] == last_run_before(site, run)["scope"]["built_at"]
    # the new row's category (one failing value), and the old key the new copy repeats
    assert failures(site) == {
        "accepted_values_fct_events_category": ("warn", 1),
        "unique_fct_events_event_id": ("fail", 1),
    }
    assert "tests scoped to rows after" in done.stdout
    assert publication(site.analytics) == before
    # the rows the scoped tests of fct_events read: by its loaded_at, the new ones only
    since = run["scope"]["checked_since"]
    scoped = query(site, f"select event_id from marts.fct_events where loaded_at > '{since}'")
    assert sorted(event_id for (event_id,) in scoped) == sorted(
        ["evt-new-1", "evt-new-2", old[1][0]]
    )
    # the unit tests did not run (fixtures only); their results are the last build's
    results = json.loads((site.root / "target" / "run_results.json").read_text())
    started = results["metadata"]["invocation_started_at"]
    units = [r for r in results["results"] if r["unique_id"].startswith("unit_test.")]
    manifest = json.loads((site.root / "target" / "manifest.json").read_text())
    assert len(units) == len(manifest["unit_tests"]) == 8
    assert {r["status"] for r in units} == {"pass"}
    assert all(r["timing"][0]["started_at"] < started for r in units)
    ran = [r for r in results["results"] if r["timing"] and r["timing"][0]["started_at"] >= started]
    assert any(r["unique_id"].startswith("model.") for r in ran)

    done = site.run()  # after a failed build: everything, and a full check
    assert done.returncode == 1, done.stdout[-3000:]
    run = last_run(site)
    assert (run["check_kind"], run["scope"]["select"]) == ("full", None)
    assert run["scope"]["reason"] == "the last build did not pass"
    # every row: the old row's category too
    assert failures(site) == {
        "accepted_values_fct_events_category": ("warn", 2),
        "unique_fct_events_event_id": ("fail", 1),
    }


def query(site: Site, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(site.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def last_run_before(site: Site, run: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in site.ledger() if r["run_id"] != run["run_id"]]
    return {**rows[-1], "scope": json.loads(rows[-1]["detail"])["build_scope"]}


def test_the_full_check_runs_when_due(published: Site, tmp_path: Path) -> None:
    site = clone(published, tmp_path / "site", with_inbox=True)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    with duckdb.connect(str(site.warehouse)) as con:
        con.execute("update monitoring.pipeline_runs set started_at = ?", [yesterday])

    done = site.run()  # nothing new, but the day's full check is due
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = last_run(site)
    assert (run["check_kind"], run["scope"]["select"]) == ("full", None)
    assert run["scope"]["reason"] == "due (daily); no new rows in raw"
    assert publication(site.analytics)["check_kind"] == "full"
    # dbt's post-hook recorded each build: what tells the monitor a table changed
    assert {
        "staging.countries",
        "staging.stg_events__events",
        "marts.dim_users",
        "marts.fct_events",
        "marts.user_features",
    } <= {r for (r,) in query(site, "select relation from monitoring.dbt_model_builds")}
    measured = dict(query(site, "select relation, measured_at from monitoring.quality_table_state"))
    assert len(measured) == 10 and min(measured.values()) >= run["started_at"]

    done = site.run()  # the same day: nothing new, nothing to check
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert last_run(site)["check_kind"] == "none"
    assert "nothing to rebuild" in done.stdout
    # ... and nothing to measure: the monitor read no table
    assert dict(
        query(site, "select relation, measured_at from monitoring.quality_table_state")
    ) == (measured)

    done = site.run("--full-check")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = last_run(site)
    assert (run["check_kind"], run["scope"]["reason"]) == (
        "full",
        "--full-check; no new rows in raw",
    )

    done = site.run(env={"PIPELINE__FULL_CHECK": "monthly"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: pipeline.full_check is 'monthly'; expected one of always, hourly, daily, weekly"
    ]


def test_a_full_check_is_due_at_the_first_run_of_each_period_of_its_cadence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # a Sunday
    due = {
        cadence: [
            full_check_due(cadence, last, at)
            for last in (None, at - timedelta(minutes=20), at - timedelta(minutes=40),
                         at - timedelta(days=1), at - timedelta(days=7))
        ]
        for cadence in ("always", "hourly", "daily", "weekly")
    }  # fmt: skip
    assert due == {
        "always": [True, True, True, True, True],
        "hourly": [True, False, True, True, True],
        "daily": [True, False, False, True, True],
        "weekly": [True, False, False, False, True],
    }
    # periods are UTC's: 01:10 in Kolkata on 2 March is still 1 March in UTC
    kolkata = datetime(2026, 3, 2, 1, 10, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert not full_check_due("daily", datetime(2026, 3, 1, 12, tzinfo=UTC), kolkata)

    config = tmp_path / "config.toml"
    config.write_text('[pipeline]\nfull_check = "hourly"\n')
    monkeypatch.delenv("PIPELINE__FULL_CHECK", raising=False)
    assert full_check_cadence(config) == "hourly"
    assert full_check_cadence(tmp_path / "missing.toml") == "daily"
    monkeypatch.setenv("PIPELINE__FULL_CHECK", "always")
    assert full_check_cadence(config) == "always"
    monkeypatch.setenv("PIPELINE__FULL_CHECK", "monthly")
    with pytest.raises(CadenceError, match="expected one of always, hourly, daily, weekly"):
        full_check_cadence(config)


def test_a_run_with_nothing_new_starts_no_dlt_pipeline_and_no_dbt_process(
    published: Site, tmp_path: Path
) -> None:
    """What the run records says so: its ingest ran no dlt pipeline (each file source's
    folder is as its last load left it), no dbt invocation and no monitor; the published
    file, current, is left as it is. A missing published file is written again."""
    site = clone(published, tmp_path / "site")
    site.full_check_done_now()
    before = site.ledger()[-1]
    results = site.root / "target" / "run_results.json"
    kept = (results.stat().st_mtime_ns, sha256(site.analytics))
    sources = ("users", "events", "products")  # orders: no API serves it here
    args = ("run", "--sources", *sources, "--inbox", str(site.inbox), "--vars", VARS)

    done = site.pipeline(*args)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = last_run(site)
    assert json.loads(run["detail"])["ingest"] == dict.fromkeys(sources, "nothing new")
    assert (run["dlt_load_ids"], run["rows_loaded"], run["check_kind"]) == ([], 0, "none")
    # the run's dbt child, started with it, was never told rows were coming
    assert json.loads(run["detail"])["dbt_child"] == "dbt never imported"
    assert run["dbt_invocation_id"] == before["dbt_invocation_id"]
    steps = [run[f"{step}_status"] for step in ("ingest", "build", "monitor", "publish")]
    assert steps == ["ok", "ok", "skipped", "skipped"]
    audit = query(
        site,
        f"select command, detail from monitoring.audit_log where run_id = '{run['run_id']}'",
    )
    assert sorted(command for command, _ in audit) == ["ingest", "run"]  # no build, no monitor
    (ingest,) = [json.loads(detail) for command, detail in audit if command == "ingest"]
    assert {name: source["dlt_pipeline"] for name, source in ingest.items()} == dict.fromkeys(
        sources, False
    )
    assert (results.stat().st_mtime_ns, sha256(site.analytics)) == kept
    assert f"{site.analytics} is current" in done.stdout

    site.analytics.unlink()
    done = site.pipeline(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [last_run(site)[f"{step}_status"] for step in ("build", "monitor", "publish")]
    assert steps == ["ok", "skipped", "ok"]
    assert publication(site.analytics)["dbt_invocation_id"] == before["dbt_invocation_id"]


def test_a_source_run_that_loads_no_row_keeps_the_shortcut(published: Site, tmp_path: Path) -> None:
    """The inbox moved, then a loaded export archived away: the file sources run (their
    folders changed), load no row, and the run still owes the monitor nothing."""
    site = clone(published, tmp_path / "site", with_inbox=True)
    site.full_check_done_now()
    sources = ("users", "events", "products")
    args = ("run", "--sources", *sources, "--inbox", str(site.inbox), "--vars", VARS)

    for change in ("another inbox", "an export moved away"):
        if change == "an export moved away":
            export = sorted((site.inbox / "users").glob("*.csv"))[0]
            export.rename(tmp_path / export.name)
        done = site.pipeline(*args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        run = last_run(site)
        ingest = json.loads(run["detail"])["ingest"]
        assert ingest["users"] == "ok", change  # a dlt pipeline ran for it
        assert (run["rows_loaded"], run["check_kind"], run["monitor_status"]) == (
            0,
            "none",
            "skipped",
        ), change


def test_after_a_run_that_failed_nothing_new_is_checked_again(
    published: Site, tmp_path: Path
) -> None:
    """Its monitor's verdict does not stand for this warehouse: the monitor runs."""
    site = clone(published, tmp_path / "site")
    site.full_check_done_now()
    with duckdb.connect(str(site.warehouse)) as con:  # the last run failed, say at its monitor
        con.execute(
            "update monitoring.pipeline_runs set status = 'failed', monitor_status = 'failed'"
            " where run_id = (select run_id from monitoring.pipeline_runs"
            " order by started_at desc limit 1)"
        )
    sources = ("users", "events", "products")
    done = site.pipeline("run", "--sources", *sources, "--inbox", str(site.inbox), "--vars", VARS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = last_run(site)
    assert json.loads(run["detail"])["ingest"] == dict.fromkeys(sources, "nothing new")
    assert (run["check_kind"], run["monitor_status"]) == ("none", "ok")


def duplicate_count(site: Site) -> tuple[Any, ...]:
    """The events source's duplicate_rate summary as its test stored it (audit schema)."""
    (table,) = query(
        site,
        "select table_name from information_schema.tables where table_schema = 'audit'"
        " and table_name like 'ml_warehouse_source_duplicate_rate_events_events_event_id%'",
    )[0]
    return query(
        site, f"select row_count, duplicate_count, latest_load_id, counted from audit.{table}"
    )[0]


def counted_whole(site: Site) -> tuple[Any, ...]:
    """What counting every row of raw.events gives: rows, repeated event_ids, newest load."""
    return query(
        site,
        "select count(*), count(event_id) - count(distinct event_id), max(_dlt_load_id)"
        " from raw.events",
    )[0]


def load_copies(site: Site, event_ids: list[str]) -> None:
    """A later dlt load (a newer load id) holding a copy of each of `event_ids`' rows, as a
    faulty source or load would write them."""
    with duckdb.connect(str(site.warehouse)) as con:
        (load,) = con.execute("select max(_dlt_load_id) || '1' from raw.events").fetchone()
        for event_id in event_ids:
            con.execute(
                "insert into raw.events select * replace (? as _dlt_load_id, now() as _loaded_at)"
                " from raw.events where event_id = ? and _dlt_load_id < ?",
                [load, event_id, load],
            )


def test_a_scoped_run_adds_its_new_rows_to_the_stored_duplicate_count(
    published: Site, tmp_path: Path
) -> None:
    """The events source's duplicate_rate test stores its counts; a scoped run adds those
    of the rows loaded since (their event_ids probed against the older rows), which equal
    counting the whole table; once an older row is gone, it counts the whole table again."""
    site = clone(published, tmp_path / "site")
    site.full_check_done_now()
    rows, repeated, _, _ = stored = duplicate_count(site)
    assert stored == (*counted_whole(site), "whole table")
    old = [row[0] for row in query(site, "select event_id from raw.events order by 1 limit 3")]

    load_copies(site, old[:2] + old[:1])  # two old event_ids again, one of them twice
    done = site.run()
    assert last_run(site)["check_kind"] == "scoped", done.stdout[-3000:]
    found = duplicate_count(site)
    assert found == (*counted_whole(site), "new rows added")
    assert found[:2] == (rows + 3, repeated + 3)

    with duckdb.connect(str(site.warehouse)) as con:  # an older row erased
        con.execute("delete from raw.events where event_id = ?", [old[2]])
    load_copies(site, old[1:2])
    done = site.run()
    assert last_run(site)["check_kind"] == "scoped", done.stdout[-3000:]
    assert duplicate_count(site) == (*counted_whole(site), "whole table")

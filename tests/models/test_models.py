"""dbt models on a hand-made raw layer: exact counts per defect, accounting,
incremental == full refresh, point-in-time features, docs.

Expected numbers come from the rows in conftest.py (each row's comment says
which defect it carries).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from model_fixtures import (
    AS_OF_FAR,
    LOAD_1,
    DbtRunner,
    copy_warehouse,
    query,
    rows_equal,
    scalar,
)

pytestmark = pytest.mark.slow

MARTS = ["dim_users", "fct_events", "fct_orders", "category_stats", "user_features"]
QUARANTINE = ["quarantine_users", "quarantine_events", "quarantine_orders"]


def last_compiled(dbt_workdir: Path) -> dict[str, str]:
    """The compiled SQL of each node of the last dbt command in `dbt_workdir`, by name."""
    results = json.loads((dbt_workdir / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["compiled_code"] for r in results["results"]}


def test_users_counts_per_defect(full_build: Path) -> None:
    wh = full_build
    assert scalar(wh, "select count(*) from raw.users") == 15
    assert scalar(wh, "select count(*) from marts.dim_users") == 9
    assert scalar(wh, "select count(distinct user_id) from marts.dim_users") == 9
    reasons = query(
        wh,
        "select quarantine_reason, count(*) from quarantine.quarantine_users group by 1 order by 1",
    )
    assert reasons == [("duplicate", 1), ("invalid_timestamp", 1), ("missing_key", 2)]
    superseded = query(
        wh,
        "select row_key from intermediate.int_users_versioned where not is_current order by 1",
    )
    assert superseded == [("users-0001.csv:2",), ("users-0001.csv:7",)]
    flags = query(
        wh,
        """
        select
            count(*) filter (where not is_valid_email),
            count(*) filter (where email is null),
            count(*) filter (where has_email_needing_cleanup),
            count(*) filter (where has_missing_age),
            count(*) filter (where has_non_numeric_age),
            count(*) filter (where has_impossible_age),
            count(*) filter (where is_age_imputed),
            count(*) filter (where is_personal_email)
        from marts.dim_users
        """,
    )
    assert flags == [(3, 3, 1, 1, 1, 1, 3, 2)]
    assert scalar(wh, "select email from marts.dim_users where user_id = 2") == "bob@example.com"
    # mean of the valid latest ages 31, 25, 35, 41, 51, 36
    imputed = "select distinct age_imputed from marts.dim_users where is_age_imputed"
    assert scalar(wh, imputed) == 36.5
    groups = query(wh, "select age_group, count(*) from marts.dim_users group by 1 order by 1")
    assert groups == [("adult", 2), ("middle", 5), ("senior", 1), ("young", 1)]


def test_events_and_orders_counts(full_build: Path) -> None:
    wh = full_build
    assert scalar(wh, "select count(*) from raw.events") == 18
    assert scalar(wh, "select count(*) from marts.fct_events") == 15
    reasons = query(
        wh,
        "select quarantine_reason, segment, segment_line from quarantine.quarantine_events"
        " order by 1",
    )
    assert reasons == [
        ("duplicate", "events-000001.jsonl", 4),  # evt-004, re-sent in the second load
        ("invalid_timestamp", "events-000001.jsonl", 10),
        ("missing_key", "events-000001.jsonl", 9),
    ]
    outliers = query(wh, "select event_id from marts.fct_events where is_value_outlier order by 1")
    assert outliers == [("evt-005",)]
    stats = query(wh, "select category, event_count from marts.category_stats order by category")
    assert stats == [("add_to_cart", 1), ("click", 9), ("purchase", 1), ("view", 4)]
    # 2026-01-03 was a Saturday (5), 2026-01-04 a Sunday (6), 2026-01-06 a Tuesday (1)
    days = query(
        wh,
        "select event_id, event_hour, event_day_of_week from marts.fct_events"
        " where event_id in ('evt-001', 'evt-008', 'evt-011') order by 1",
    )
    assert days == [("evt-001", 8, 5), ("evt-008", 20, 6), ("evt-011", 8, 1)]
    # "abc", NaN and -Infinity: no value, flagged; every mart's floats are finite
    flagged = "select event_id from intermediate.int_events_enriched where has_non_numeric_value"
    assert query(wh, flagged + " order by 1") == [("evt-015",), ("evt-016",), ("evt-017",)]
    assert scalar(wh, "select count(*) from marts.fct_events where value is null") == 3
    for mart, column in [("category_stats", "value_mean"), ("fct_events", "value")]:
        assert scalar(wh, f"select count(*) from marts.{mart} where not isfinite({column})") == 0

    assert scalar(wh, "select count(*) from marts.fct_orders") == 4
    reasons = query(
        wh,
        "select quarantine_reason, order_id from quarantine.quarantine_orders order by 2",
    )
    assert reasons == [("unknown_user", 3), ("missing_key", 4), ("invalid_amount", 7)]
    categories = query(wh, "select order_id, product_category from marts.fct_orders order by 1")
    assert categories == [(1, "tools"), (2, "books"), (5, "books"), (6, "tools")]


def test_every_raw_row_is_accounted_for(full_build: Path) -> None:
    wh = full_build
    for entity, mart, superseded, quarantine in [
        ("users", "marts.dim_users", 2, "quarantine.quarantine_users"),
        ("events", "marts.fct_events", 0, "quarantine.quarantine_events"),
        ("orders", "marts.fct_orders", 0, "quarantine.quarantine_orders"),
    ]:
        raw = scalar(wh, f"select count(*) from raw.{entity}")
        in_mart = scalar(wh, f"select count(*) from {mart}")
        quarantined = scalar(wh, f"select count(*) from {quarantine}")
        assert raw == in_mart + superseded + quarantined, entity
    # the rows_accounted_for tests on the raw tables check the same identity in `dbt build`
    assert query(wh, "select count(*) from intermediate.int_users_versioned where not is_current")
    assert scalar(wh, "select count(*) from intermediate.int_users_versioned") == 11


def test_incremental_run_equals_full_refresh(
    full_build: Path, incremental_build: tuple[Path, list[dict[str, Any]]]
) -> None:
    incremental, builds = incremental_build

    def compiled(run_results: dict[str, Any], model: str) -> str:
        node = next(r for r in run_results["results"] if r["unique_id"].endswith(f".{model}"))
        return " ".join(str(node["compiled_code"]).split())

    # the builds after the first really took the incremental path: the rows loaded
    # after the newest stored one, then that instant again (raw had more of it)
    first, second, third = (compiled(run_results, "stg_events__events") for run_results in builds)
    assert "stored_copies" not in first
    assert "stored_copies" in second and " > cast('2026-01-05 00:00:00' as" in second
    assert "stored_copies" in third and " >= cast('2026-01-07 00:00:00' as" in third
    assert scalar(incremental, "select count(*) from intermediate.int_events_enriched") == 15
    # the re-sent evt-004: its second load's copy replaced the first (loaded_at tells them apart)
    resent = "select loaded_at from intermediate.int_events_enriched where event_id = 'evt-004'"
    assert scalar(incremental, resent) == scalar(full_build, resent)
    assert scalar(incremental, resent) == scalar(
        incremental, "select max(loaded_at) from intermediate.int_events_enriched"
    )
    statuses = "select event_status, count(*) from staging.stg_events__events group by 1 order by 1"
    assert query(incremental, statuses) == [
        ("duplicate", 1),
        ("invalid_timestamp", 1),
        ("missing_key", 1),
        ("valid", 15),
    ]
    # quarantine_events added only the rows it did not hold: load 2's missing key, and
    # evt-004's first copy, valid after load 1 and a duplicate since its second copy came
    assert ["not exists" in compiled(r, "quarantine_events") for r in builds] == [
        False,
        True,
        True,
    ]
    tables = [f"marts.{m}" for m in MARTS] + [f"quarantine.{q}" for q in QUARANTINE]
    for table in ["staging.stg_events__events", "intermediate.int_events_enriched", *tables]:
        sql = f"select * from {table} order by all"
        assert rows_equal(query(incremental, sql), query(full_build, sql)), table
    # user activity: the later builds recomputed only the users the new rows reach;
    # the others keep the row of the first build, which is still right
    assert ["changed_users" in compiled(r, "int_user_activity") for r in builds] == [
        False,
        True,
        True,
    ]
    activity = (
        "select * exclude (events_loaded_through, events_loaded_through_rows)"
        " from intermediate.int_user_activity order by all"
    )
    assert rows_equal(query(incremental, activity), query(full_build, activity))
    # user 99's one event came in load 1; users 1, 2, 3 and 9 got events or orders in load 2
    kept = "select user_id from intermediate.int_user_activity where events_loaded_through = "
    kept += f"'{LOAD_1}'"
    assert query(incremental, kept) == [(99,)]


def test_quarantined_events_follow_their_staging_status(
    full_build: Path, dbt_workdir: Path, dbt_run: DbtRunner
) -> None:
    """An incremental quarantine_events holds exactly the staging rows that are not
    valid, under their status, whatever changed them (a backfill re-classifying rows,
    a row lost from the table): the rows a full refresh of it holds."""
    changed = copy_warehouse(full_build, dbt_workdir / "quarantine_changed.duckdb")
    con = duckdb.connect(str(changed))
    try:
        # as a backfill would: the unparsable occurred_at now parses, a valid event
        # turns out to be a duplicate
        con.execute(
            "update staging.stg_events__events set event_status = 'valid', "
            "occurred_at = timestamp '2026-01-03 00:00:00' "
            "where event_status = 'invalid_timestamp'"
        )
        con.execute(
            "update staging.stg_events__events set event_status = 'duplicate' "
            "where event_id = 'evt-001'"
        )
        # and a quarantined row went missing
        con.execute(
            "delete from quarantine.quarantine_events where quarantine_reason = 'missing_key'"
        )
    finally:
        con.close()
    rebuilt = copy_warehouse(changed, dbt_workdir / "quarantine_rebuilt.duckdb")
    dbt_run(["run", "-s", "quarantine_events"], changed)
    assert "not exists" in last_compiled(dbt_workdir)["quarantine_events"]  # incremental path
    dbt_run(["run", "-s", "quarantine_events", "--full-refresh"], rebuilt)
    held = "select quarantine_reason, event_id from quarantine.quarantine_events order by all"
    assert query(changed, held) == [
        ("duplicate", "evt-001"),
        ("duplicate", "evt-004"),
        ("missing_key", None),
    ]
    everything = "select * from quarantine.quarantine_events order by all"
    assert rows_equal(query(changed, everything), query(rebuilt, everything))


def test_stored_activity_follows_features_as_of_both_ways(
    full_build: Path, dbt_workdir: Path, dbt_run: DbtRunner
) -> None:
    """Moving features_as_of back, then forward, updates the stored activity of the
    users with events or orders in between, and matches a full computation."""
    stepped = copy_warehouse(full_build, dbt_workdir / "as_of_stepped.duckdb")
    rebuilt = copy_warehouse(full_build, dbt_workdir / "as_of_rebuilt.duckdb")
    models = ["run", "-s", "int_user_activity", "user_features"]
    features = "select * from marts.user_features order by all"
    activity = (
        "select * exclude (events_loaded_through, events_loaded_through_rows)"
        " from intermediate.int_user_activity order by all"
    )
    back = "2026-01-04T12:00:00Z"
    dbt_run([*models, "--full-refresh"], rebuilt, {"features_as_of": back})
    # back, then forward again: each time a full computation's rows (forward, at the full
    # build's as-of, that is full_build itself)
    for as_of, full in ((back, rebuilt), (AS_OF_FAR, full_build)):
        dbt_run(models, stepped, {"features_as_of": as_of})
        code = last_compiled(dbt_workdir)
        assert "changed_users" in code["int_user_activity"]  # the incremental path
        assert "activity_events" not in code["user_features"]  # it read the stored rows
        assert rows_equal(query(stepped, features), query(full, features)), as_of
        assert rows_equal(query(stepped, activity), query(full, activity)), as_of


def test_point_in_time_features_ignore_the_future(
    full_build: Path, dbt_workdir: Path, dbt_run: DbtRunner
) -> None:
    wh = copy_warehouse(full_build, dbt_workdir / "as_of.duckdb")
    dbt_run(["run", "-s", "user_features"], wh, {"features_as_of": "2026-01-04T12:00:00Z"})
    rows = query(
        wh,
        """
        select
            user_id, event_count, event_count_click, event_count_view, value_mean,
            order_count, order_amount_total, days_since_last_event, days_since_last_order,
            cast(features_as_of as varchar)
        from marts.user_features
        where user_id in (1, 2, 3, 9)
        order by user_id
        """,
    )
    assert rows == [
        # evt-006, evt-008, evt-011 and order 5 are after T
        (1, 2, 2, 0, 1.5, 1, 10.0, 1, 2, "2026-01-04 12:00:00"),
        # the late evt-013 (occurred 01-02) counts; evt-014 is after T
        (2, 3, 3, 0, 3.5, 1, 20.0, 0, 0, "2026-01-04 12:00:00"),
        # evt-005 occurred exactly at T: at or before counts
        (3, 1, 1, 0, 100.0, 0, 0.0, 0, None, "2026-01-04 12:00:00"),
        (9, 0, 0, 0, None, 0, 0.0, None, None, "2026-01-04 12:00:00"),
    ]
    future = scalar(
        wh,
        """
        select count(*) from marts.user_features as f
        join marts.fct_events as e on e.user_id = f.user_id
        where e.occurred_at > f.features_as_of
        """,
    )
    assert future > 0  # there are later events, and none of them was counted above
    # without the var, features are as of the run's start (now, after all sample data)
    totals = query(
        full_build,
        "select sum(event_count), sum(order_count) from marts.user_features",
    )
    assert totals == [(14, 4)]  # evt-007's user 99 is not in dim_users


def test_docs_generate(full_build: Path, dbt_workdir: Path, dbt_run: DbtRunner) -> None:
    wh = copy_warehouse(full_build, dbt_workdir / "docs.duckdb")
    dbt_run(["docs", "generate"], wh, {"features_as_of": "2026-02-01T00:00:00Z"})
    assert (dbt_workdir / "target" / "catalog.json").exists()
    assert (dbt_workdir / "target" / "index.html").exists()


def test_finite_values_fails_a_mart_holding_nan_or_infinity(
    full_build: Path, dbt_workdir: Path, dbt_run: DbtRunner
) -> None:
    wh = copy_warehouse(full_build, dbt_workdir / "non_finite.duckdb")
    with duckdb.connect(str(wh)) as con:
        con.execute("update marts.category_stats set value_std = 'NaN' where category = 'view'")
        con.execute(
            "update intermediate.int_user_activity set value_mean = '-Infinity' where user_id = 1"
        )
    done = dbt_run(["test", "--select", "test_name:finite_values"], wh, check=False)
    assert done.returncode == 1
    assert "PASS=4 WARN=0 ERROR=3" in done.stdout, done.stdout[-3000:]  # 2 tests + the 2 hooks
    failed = sorted(re.findall(r"Failure in test ml_warehouse_(finite_values_\w+)", done.stdout))
    # fct_events and user_features are views: they read category_stats' NaN as
    # category_value_std, and int_user_activity's -Infinity as value_mean
    assert failed == [
        "finite_values_category_stats_",
        "finite_values_fct_events_",
        "finite_values_user_features_",
    ]


# (text as sent, its UTC wall time with the source's time zone UTC, with America/New_York)
TIMESTAMP_TEXTS = [
    ("2026-01-01T10:00:00+05:30", "2026-01-01 04:30:00", "2026-01-01 04:30:00"),
    ("2026-07-01T12:00:00Z", "2026-07-01 12:00:00", "2026-07-01 12:00:00"),
    ("2026-07-01 12:00:00", "2026-07-01 12:00:00", "2026-07-01 16:00:00"),
    ("2026-01-01", "2026-01-01 00:00:00", "2026-01-01 05:00:00"),
    ("1969-12-31T23:59:59.999999-00:30", *["1970-01-01 00:29:59.999999"] * 2),
    ("0001-01-01T00:00:00Z", "0001-01-01 00:00:00", "0001-01-01 00:00:00"),
    ("infinity", "infinity", "infinity"),
    ("-infinity", "-infinity", "-infinity"),
    ("2026-13-01T00:00:00Z", None, None),
    ("not a time", None, None),
    (None, None, None),
]
# (a timestamp with time zone, its UTC wall time)
TYPED_INSTANTS = [
    ("2026-01-01 10:00:00+05:30", "2026-01-01 04:30:00"),
    ("1969-12-31 23:59:59.999999-00:30", "1970-01-01 00:29:59.999999"),
    ("infinity", "infinity"),
    ("-infinity", "-infinity"),
]


def test_to_utc_timestamp_reads_offsets_wall_times_and_infinities_in_any_session_zone(
    dbt_workdir: Path, dbt_run: DbtRunner
) -> None:
    """DuckDB's to_utc_timestamp (cross_db.sql) reads a finite instant's UTC wall time
    from its epoch microseconds, not through ICU's calendar: text with an offset, wall
    times in the source's zone, typed instants and infinities, whatever the session's
    time zone."""
    inline = (
        "select {{ ml_warehouse.to_utc_timestamp('t') }} as utc,"
        " {{ ml_warehouse.to_utc_timestamp('t', tz='America/New_York') }} as new_york,"
        " {{ ml_warehouse.to_utc_timestamp('i', safe=false) }} as typed from texts order by n"
    )
    done = dbt_run(["compile", "--quiet", "--inline", inline], dbt_workdir / "compile.duckdb")
    compiled = done.stdout.strip()
    assert "make_timestamp(epoch_us(" in compiled
    typed = TYPED_INSTANTS + [(None, None)] * (len(TIMESTAMP_TEXTS) - len(TYPED_INSTANTS))
    for zone in ("Asia/Kathmandu", "America/New_York", "UTC"):
        with duckdb.connect() as con:
            con.execute(f"set TimeZone = '{zone}'")
            con.execute("create table texts (n int, t varchar, i timestamptz)")
            con.executemany(
                "insert into texts values (?, ?, cast(? as timestamptz))",
                [
                    [n, text, instant]
                    for n, ((text, *_), (instant, _)) in enumerate(
                        zip(TIMESTAMP_TEXTS, typed, strict=True)
                    )
                ],
            )
            got = con.execute(f"select cast(columns(*) as varchar) from ({compiled})").fetchall()
        assert got == [
            (utc, new_york, typed_utc)
            for (_, utc, new_york), (_, typed_utc) in zip(TIMESTAMP_TEXTS, typed, strict=True)
        ], zone

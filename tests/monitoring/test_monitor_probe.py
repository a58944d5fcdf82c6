"""An append-only table's new rows added to the stored aggregates (probe_appended) give
exactly what a scan of the whole table with the same stored fences gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.config import Thresholds
from monitoring.manifest import Target
from monitoring.metrics import (
    Aggregates,
    DltLoads,
    probe_appended,
    scan_table,
    table_columns,
    table_layout,
)

COLUMNS = "event_id varchar, category varchar, value double, _loaded_at timestamptz, "
COLUMNS += "_dlt_load_id varchar"


def insert(con: duckdb.DuckDBPyConnection, load_id: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    con.executemany(
        "insert into raw.events values (?, ?, ?, ?::timestamptz, ?)",
        [(*row, load_id) for row in rows],
    )


def first_load() -> list[tuple[Any, ...]]:
    rows = [
        (f"e{i}", ("a", "b")[i % 2], float(i % 7), f"2026-01-0{1 + i % 5} 10:00:00+00")
        for i in range(40)
    ]
    rows += [
        ("e3", "b", 3.0, "2026-01-02 10:00:00+00"),
        (None, "a", None, None),
        ("e5", "a", 90.0, None),
    ]
    return rows


# What a later load may bring: copies of old keys, copies among themselves, nulls, outliers
# (low and high), a newer time, or nothing at all.
LATER = {
    "old_and_new_copies": [
        ("e1", "b", 1.0, "2026-01-09 00:00:00+00"),
        ("e1", "b", 2.0, None),
        ("n1", "a", 500.0, "2026-01-08 00:00:00+00"),
        ("n1", "a", -300.0, None),
        ("n2", None, None, None),
        (None, "b", 4.0, "2026-01-03 00:00:00+00"),
    ],
    "older_times_only": [("n9", "a", 2.0, "2025-12-01 00:00:00+00")],
    "nothing": [],
}


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("set TimeZone = 'UTC'")
    con.execute("create schema raw")
    con.execute(f"create table raw.events ({COLUMNS})")
    insert(con, "1700000000.1", first_load())
    return con


def measured(con: duckdb.DuckDBPyConnection, target: Target, stored: Aggregates | None) -> Any:
    shape = table_layout(target, dict(table_columns(con, "raw", "events")), Thresholds({}))
    return shape, scan_table(con, target, shape, DltLoads(con), stored)[0]


def without_time(aggregates: Aggregates) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(aggregates).items() if k != "measured_at"}


TARGETS = {
    "key": Target("source.x.events.events", "source", "raw", "events", unique_key=["event_id"]),
    "grouped": Target(
        "source.x.events.events",
        "source",
        "raw",
        "events",
        unique_key=["event_id"],
        column_meta={"value": {"outlier_group_by": "category"}},
    ),
}


@pytest.mark.parametrize("later", LATER)
@pytest.mark.parametrize("layout", TARGETS)
def test_probing_the_new_rows_equals_scanning_the_table(
    con: duckdb.DuckDBPyConnection, layout: str, later: str
) -> None:
    target = TARGETS[layout]
    _, stored = measured(con, target, None)  # the full check: fences from quartiles
    insert(con, "1700000100.2", LATER[later])
    shape, scanned = measured(con, target, stored)  # the stored fences, every row read

    probed = probe_appended(con, target, shape, stored, DltLoads(con))

    assert probed is not None
    assert without_time(probed[0]) == without_time(scanned)
    if later == "old_and_new_copies":  # the cases are not vacuous
        assert scanned.duplicates == stored.duplicates + 3  # e1 twice, n1 once
        assert scanned.outliers["value"] > stored.outliers["value"]
        assert scanned.rows == stored.rows + 6


def test_a_table_that_did_not_only_grow_is_scanned(con: duckdb.DuckDBPyConnection) -> None:
    target = TARGETS["key"]
    shape, stored = measured(con, target, None)
    con.execute("delete from raw.events where event_id = 'e7'")  # an erasure, say
    insert(con, "1700000100.2", LATER["old_and_new_copies"])
    assert probe_appended(con, target, shape, stored, DltLoads(con)) is None


def test_a_new_group_or_a_composite_key_is_scanned(con: duckdb.DuckDBPyConnection) -> None:
    grouped = TARGETS["grouped"]
    shape, stored = measured(con, grouped, None)
    insert(con, "1700000100.2", [("n5", "c", 1.0, None)])  # category c has no fence yet
    assert probe_appended(con, grouped, shape, stored, DltLoads(con)) is None
    composite = dataclasses.replace(grouped, unique_key=["event_id", "category"], column_meta={})
    shape, stored = measured(con, composite, None)
    insert(con, "1700000200.3", [("n6", "a", 1.0, None)])
    assert probe_appended(con, composite, shape, stored, DltLoads(con)) is None

"""The speed layer's file (warehouse/fresh.py) on a real DuckDB raw table and a real
SQLite file: which events it keeps, across syncs that repeat and publishes."""

from __future__ import annotations

import math
import random
import sqlite3
import statistics
from pathlib import Path

import duckdb
import pytest

from warehouse import fresh
from warehouse.sources import SourceDeclarationError

CONFIG = Path(__file__).resolve().parents[2] / ".dlt" / "config.toml"


@pytest.fixture
def raw(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema raw")
    con.execute(
        "create table raw._dlt_loads (load_id varchar, status int, inserted_at timestamptz)"
    )
    con.execute(
        "create table raw.events (event_id varchar, user_id varchar, category varchar, "
        "value varchar, occurred_at varchar, _segment varchar, _line bigint, "
        "_loaded_at timestamptz, _dlt_load_id varchar)"
    )
    return con


@pytest.fixture
def spec() -> fresh.FreshSpec:
    """The sample project's declaration."""
    declared = fresh.fresh_spec(CONFIG)
    assert declared is not None
    return declared


def load(con: duckdb.DuckDBPyConnection, load_id: str, inserted: str, *rows: tuple) -> None:
    """A committed load: its rows (event_id, user_id, category, value, occurred_at)."""
    for line, row in enumerate(rows):
        con.execute(
            "insert into raw.events values (?, ?, ?, ?, ?, 's', ?, ?::timestamptz, ?)",
            [*row, line, inserted, load_id],
        )
    con.execute("insert into raw._dlt_loads values (?, 0, ?::timestamptz)", [load_id, inserted])


def stored(store: Path) -> dict[str, tuple]:
    with sqlite3.connect(store) as con:
        return {r[0]: r[1:] for r in con.execute("select id, key, load_id from events")}


def micros(text: str) -> int:
    return fresh.micros(duckdb.sql(f"select '{text}'::timestamptz").fetchall()[0][0])


def test_a_sync_keeps_each_counted_event_once_and_catches_up_what_it_missed(
    raw: duckdb.DuckDBPyConnection, spec: fresh.FreshSpec, tmp_path: Path
) -> None:
    store = tmp_path / "analytics.fresh.sqlite"
    fresh.start(store, spec, fresh.Snapshot(0, 0, micros("2026-12-01 00:00:00+00")))
    load(raw, "1.1", "2026-11-30 00:00:00+00", ("old", "1", "click", "1", "2026-11-30T00:00:00Z"))
    load(
        raw, "2.1", "2026-12-06 10:00:00+00",
        ("a", "1", "click", "1.5", "2026-12-06T09:00:00Z"),
        ("b", " 2 ", "VIEW", "x", "2026-12-06 09:00:00"),  # counted: value not numeric
        ("c", "abc", "click", "1", "2026-12-06T09:00:00Z"),  # no user
        ("d", "3", "click", "1", "not-a-time"),  # quarantined
        ("  ", "3", "click", "1", "2026-12-06T09:00:00Z"),  # no id once trimmed
    )  # fmt: skip
    # a crash after a load, before its sync: the next sync writes both loads' events
    load(raw, "3.1", "2026-12-06 10:00:01+00", ("e", "4", "search", "2", "2026-12-06T09:00:01Z"))
    assert fresh.sync(raw, spec, store) == fresh.Synced(loads=2, events=3, held=0)
    assert stored(store) == {"a": (1, "2.1"), "b": (2, "2.1"), "e": (4, "3.1")}
    assert fresh.sync(raw, spec, store) == fresh.Synced()  # nothing new: nothing written
    with sqlite3.connect(store) as con:  # a batch written twice writes each event once
        con.execute("delete from loads")
    assert fresh.sync(raw, spec, store).events == 3
    assert len(stored(store)) == 3
    # an id that normalises to an older event's: the build moves the event to the later
    # copy, which the file cannot take back: its user is held, the copy not written
    load(raw, "4.1", "2026-12-06 10:00:02+00", ("a ", "5", "click", "1", "2026-12-06T09:00:02Z"))
    assert fresh.sync(raw, spec, store) == fresh.Synced(loads=1, events=0, held=1)
    rows = fresh.Reader(store).rows([5, 1])
    assert rows.held == {5} and set(rows.events) == {1}


def test_a_publish_drops_what_the_snapshot_before_it_holds(
    raw: duckdb.DuckDBPyConnection, spec: fresh.FreshSpec, tmp_path: Path
) -> None:
    store = tmp_path / "analytics.fresh.sqlite"
    fresh.start(store, spec, fresh.Snapshot(1, 0, 0))
    load(
        raw, "1.1", "2026-12-06 10:00:00+00",
        ("early", "1", "click", "1", "2026-12-06T09:00:00Z"),
        ("late", "1", "click", "1", "2026-12-06T11:00:00Z"),  # after the next snapshot's as-of
    )  # fmt: skip
    fresh.sync(raw, spec, store)
    first = fresh.Snapshot(2, micros("2026-12-06 10:30:00+00"), micros("2026-12-06 10:00:00+00"))
    assert fresh.published(store, spec, first) == 0  # an API may still serve the one before
    assert set(stored(store)) == {"early", "late"}
    load(raw, "2.1", "2026-12-06 12:00:00+00", ("next", "2", "click", "1", "2026-12-06T11:30:00Z"))
    fresh.sync(raw, spec, store)
    second = fresh.Snapshot(3, micros("2026-12-06 12:30:00+00"), micros("2026-12-06 12:00:00+00"))
    assert fresh.published(store, spec, second) == 1  # `early`: the first snapshot holds it
    assert set(stored(store)) == {"late", "next"}
    assert fresh.Reader(store).rows([1]).dropped_snapshot == 2


def test_merged_aggregates_equal_the_aggregates_of_all_events() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(1001)]
    mean, std = fresh.Feature("m", "mean", "v"), fresh.Feature("s", "std", "v")
    base, added = fresh.event_state(mean, values[:900]), fresh.event_state(mean, values[900:])
    merged = base.merge(added)
    assert math.isclose(merged.mean, statistics.fmean(values), rel_tol=1e-12)
    as_of = fresh.from_micros(0)
    assert fresh.finish(std, merged, as_of, 6) == round(statistics.stdev(values), 6)
    assert fresh.finish(std, fresh.event_state(std, [3.0]), as_of, 6) is None  # one value
    assert fresh.finish(mean, fresh.Aggregate(), as_of, 6) is None  # none


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('source = "nope"', "fresh.source = 'nope' is not a declared jsonl source"),
        ('source = "users"', "fresh.source = 'users' is not a declared jsonl source"),
        ("x = 1", "fresh.source in"),
    ],
)
def test_a_declaration_that_cannot_work_is_refused_with_the_key_to_fix(
    tmp_path: Path, table: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[sources.users]\nkind = "csv"\nfolder = "x"\n[fresh]\n' + table + "\n", encoding="utf-8"
    )
    with pytest.raises((fresh.FreshSpecError, SourceDeclarationError), match=message):
        fresh.fresh_spec(config)


def test_an_unknown_aggregate_is_named(tmp_path: Path) -> None:
    text = CONFIG.read_text(encoding="utf-8").replace(
        'value_mean = { mean = "value" }', 'value_mean = { median = "value" }'
    )
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(fresh.FreshSpecError, match="fresh.features.value_mean: 'median'"):
        fresh.fresh_spec(config)

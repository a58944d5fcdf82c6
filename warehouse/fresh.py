"""The speed layer: events committed since the published snapshot, kept beside it.

The feature API serves the published `user_features`; a new event reaches it
only after a build and a publish. The speed layer closes that gap for the
features that are plain aggregates of one event mart (counts, sums, means,
standard deviations, the day of the last event): every load of the stream
source also writes its events, cleaned as the staging model cleans them, to a
small SQLite file beside `analytics.duckdb`, and the API adds each user's
events that the snapshot does not hold to the snapshot's exact aggregates.

Why it is built this way:

- Per event, not per batch aggregate: whether the snapshot holds an event is
  decided per event (its load is in the snapshot's `dlt_load_ids` and its time
  at or before the snapshot's `features_as_of`), so a publish in the middle of
  a stream neither counts an event twice nor drops one, however the build's
  as-of and its loads interleave. The file holds the events since the last
  publish (a publish drops those it now holds), one row per event id, so a
  re-sent event overwrites itself instead of counting twice.
- SQLite in WAL mode: the API reads while a load writes, in other processes,
  without either waiting (a DuckDB file open for writing cannot be read by
  another process).
- Written after the load committed, from what raw holds: only rows that
  passed ingestion (no rejected line, no collapsed duplicate, no erased user)
  and the staging's row checks (`valid`) are kept. A load whose events were
  not written (a crash in between) is found by the next sync: every completed
  load since the last publish that the file does not list.
- What cannot be kept exactly per event is not kept: an event whose
  normalised id equals an older event's (raw keeps both, the build counts only
  the later one) puts its user on hold; held users are answered from the
  snapshot alone until a publish holds the event.

The declaration is `[fresh]` in `.dlt/config.toml` (docs/serving.md); its SQL
is DuckDB's.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse.sources import config_file, declared_sources
from warehouse.sql import quote

AGGREGATES = ("count", "sum", "mean", "std", "days_since_last")
STORE_SUFFIX = ".fresh.sqlite"
STORE_MODE = 0o640  # as the published file's default (ANALYTICS_FILE_MODE); its WAL follows
NO_TIME = -(2**63)  # a latest time that is none, in an int64 column
# Columns of raw's stream rows that order the copies of one event (ingestion's lineage).
LINEAGE_ORDER = "_loaded_at desc, _segment desc, _line desc"


class FreshSpecError(ValueError):
    """A `[fresh]` declaration that cannot be used: the message names the key to fix."""


@dataclass(frozen=True)
class Feature:
    """One served column kept fresh: `aggregate` over the per-event `expression`."""

    name: str
    aggregate: str
    expression: str

    def event_input(self) -> str:
        """Its per-event input as SQL over the mart's columns (what is stored per event)."""
        if self.aggregate == "count":
            return f"case when ({self.expression}) then 1 else 0 end"
        if self.aggregate == "days_since_last":
            return f"epoch_us({self.expression})"
        return f"cast({self.expression} as double)"


@dataclass(frozen=True)
class FreshSpec:
    source: str  # the stream source (a jsonl source) whose loads feed the layer
    raw_table: str  # its table in raw
    events_mart: str  # the published mart the features aggregate (schema marts)
    key: str  # the mart column = the served table's key
    time: str  # the mart column an as-of compares
    id: str  # the mart column that identifies an event
    raw_key: str | None  # the source's key column in raw (None: a composite key)
    columns: dict[str, str]  # mart column -> DuckDB SQL over the raw row
    valid: str  # which rows count (SQL over the mart's columns)
    features: tuple[Feature, ...]
    decimals: int = 6
    table: str = "user_features"  # the served table (schema marts), with features_as_of

    def mart_select(self) -> str:
        """The raw row as the mart's columns (SQL select list over a raw row)."""
        return ", ".join(
            f"{expression} as {quote(name)}" for name, expression in self.columns.items()
        )

    def inputs_select(self) -> str:
        """The stored per-event inputs, over the mart's columns: id, key, time, f0, f1, ..."""
        inputs = [f"{feature.event_input()} as f{i}" for i, feature in enumerate(self.features)]
        return ", ".join(
            [
                f"cast({quote(self.id)} as varchar) as id",
                f"cast({quote(self.key)} as bigint) as key",
                f"epoch_us({quote(self.time)}) as time",
                *inputs,
            ]
        )

    def state_sql(self, mart: str, as_of: str) -> str:
        """Per key, the exact aggregates of the mart's events at or before `as_of` (a SQL
        timestamp): for each feature its state columns, named s<i>_<part>."""
        parts = []
        for i, feature in enumerate(self.features):
            x = feature.event_input()
            if feature.aggregate == "count":
                parts.append(f"sum({x}) as s{i}_n")
            elif feature.aggregate == "days_since_last":
                parts.append(f"max({x}) as s{i}_max")
            else:
                parts += [
                    f"count({x}) as s{i}_n",
                    f"avg({x}) as s{i}_mean",
                    f"var_pop({x}) * count({x}) as s{i}_m2",
                ]
        return (
            f"select cast({quote(self.key)} as bigint) as key, {', '.join(parts)} from {mart} "
            f"where {quote(self.key)} is not null and {quote(self.time)} <= {as_of} "
            f"and ({self.valid}) group by 1"
        )


def stored_state(i: int, feature: Feature, columns: dict[str, Any], position: int) -> Aggregate:
    """Feature `i`'s state at `position` of the columns `state_sql` returned (nulls filled:
    0, and NO_TIME for a user without a last time)."""
    if feature.aggregate == "count":
        return Aggregate(n=float(columns[f"s{i}_n"][position]))
    if feature.aggregate == "days_since_last":
        latest = int(columns[f"s{i}_max"][position])
        return Aggregate(latest=None if latest == NO_TIME else latest)
    return Aggregate(
        float(columns[f"s{i}_n"][position]),
        float(columns[f"s{i}_mean"][position]),
        float(columns[f"s{i}_m2"][position]),
    )


def fresh_spec(path: Path | None = None) -> FreshSpec | None:
    """The project's `[fresh]` declaration (None: the project has no speed layer)."""
    path = path or config_file()
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        try:
            table = tomllib.load(handle).get("fresh")
        except tomllib.TOMLDecodeError as error:
            raise FreshSpecError(f"{path} is not valid TOML: {error}") from None
    if table is None:
        return None

    def text(name: str) -> str:
        value = table.get(name)
        if not isinstance(value, str) or not value.strip():
            raise FreshSpecError(f"fresh.{name} in {path} must be a non-empty string")
        return value

    source = text("source")
    declared = declared_sources(path).get(source)
    if declared is None or declared.get("kind") != "jsonl":
        raise FreshSpecError(f"fresh.source = {source!r} is not a declared jsonl source")
    columns = table.get("columns")
    if not isinstance(columns, dict) or not all(
        isinstance(v, str) and v.strip() for v in columns.values()
    ):
        raise FreshSpecError("fresh.columns must map each mart column to a SQL expression")
    for name in ("key", "time", "id"):
        if text(name) not in columns:
            raise FreshSpecError(f"fresh.{name} = {table[name]!r} is not one of fresh.columns")
    features = []
    for name, definition in (table.get("features") or {}).items():
        if not isinstance(definition, dict) or len(definition) != 1:
            raise FreshSpecError(
                f'fresh.features.{name} must be one of {{ {" | ".join(AGGREGATES)} = "SQL" }}'
            )
        ((aggregate, expression),) = definition.items()
        if aggregate not in AGGREGATES or not isinstance(expression, str):
            raise FreshSpecError(
                f"fresh.features.{name}: {aggregate!r} is not one of {', '.join(AGGREGATES)}"
            )
        features.append(Feature(name, aggregate, expression))
    if not features:
        raise FreshSpecError("fresh.features is empty: name the served columns to keep fresh")
    decimals = table.get("decimals", 6)
    if not isinstance(decimals, int) or isinstance(decimals, bool):
        raise FreshSpecError("fresh.decimals must be an integer")
    return FreshSpec(
        source=source,
        raw_table=str(declared.get("table") or source),
        events_mart=text("events_mart"),
        key=table["key"],
        time=table["time"],
        id=table["id"],
        raw_key=_single_key(declared.get("key")),
        columns=dict(columns),
        valid=table.get("valid") or "true",
        features=tuple(features),
        decimals=decimals,
        table=str(table.get("table", "user_features")),
    )


def _single_key(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, list) and len(key) == 1 and isinstance(key[0], str):
        return key[0]
    return None


def store_path(analytics: Path) -> Path:
    """The speed layer's file, beside the published one."""
    return analytics.with_name(analytics.name.removesuffix(".duckdb") + STORE_SUFFIX)


def store_files(analytics: Path) -> list[Path]:
    """The store and SQLite's companions (what a reset removes)."""
    store = store_path(analytics)
    return [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]


# --------------------------------------------------------------------------- the store


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    con.execute("pragma journal_mode = wal")
    con.execute("pragma synchronous = normal")  # WAL: a commit survives a process crash
    return con


def _create(con: sqlite3.Connection, spec: FreshSpec) -> None:
    """The tables (in the open transaction: executescript would commit it)."""
    inputs = ", ".join(f"f{i} real" for i in range(len(spec.features)))
    for statement in (
        f"""create table if not exists events (
            id text primary key, key integer not null, load_id text not null,
            inserted integer not null, time integer, {inputs})""",
        "create index if not exists events_key on events (key)",
        """create table if not exists loads (load_id text primary key,
            inserted integer not null, synced_at integer not null)""",
        """create table if not exists held (key integer not null, load_id text not null,
            inserted integer not null, primary key (key, load_id))""",
        "create table if not exists state (name text primary key, value)",
    ):
        con.execute(statement)
    signature = repr([(f.name, f.aggregate, f.expression) for f in spec.features])
    stored = con.execute("select value from state where name = 'features'").fetchone()
    if stored is not None and stored[0] != signature:  # other inputs: start over
        for table in ("events", "loads", "held"):
            con.execute(f"delete from {table}")
    con.execute("insert or replace into state values ('features', ?)", [signature])


@contextmanager
def writing(path: Path, spec: FreshSpec) -> Iterator[sqlite3.Connection]:
    """The store open for one write transaction (created on first use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # events are data: not readable by everyone (SQLite would 0644)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, STORE_MODE))
    with closing(_connect(path)) as con:
        con.execute("begin immediate")
        try:
            _create(con, spec)
            yield con
        except BaseException:
            con.execute("rollback")
            raise
        con.execute("commit")


@dataclass(frozen=True)
class Snapshot:
    """What a publish holds, in epoch microseconds: the events of loads inserted at or
    before `covered` that occurred at or before `as_of` (None: no as-of column)."""

    published_at: int
    as_of: int | None
    covered: int


@dataclass
class Synced:
    loads: int = 0
    events: int = 0
    held: int = 0


def sync(warehouse: Any, spec: FreshSpec, path: Path) -> Synced:
    """Write the events of every completed load the store does not list yet (and that the
    last publish did not cover); `warehouse` is a DuckDB connection to the warehouse."""
    done = Synced()
    with writing(path, spec) as store:
        covered = _state(store, "covered_until", 0)
        listed = {row[0] for row in store.execute("select load_id from loads")}
        loads = [
            (load_id, inserted)
            for load_id, inserted in warehouse.execute(
                "select load_id, epoch_us(inserted_at) from raw._dlt_loads "
                "where status = 0 and epoch_us(inserted_at) > ? order by load_id",
                [covered],
            ).fetchall()
            if load_id not in listed
        ]
        present = warehouse.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw' "
            "and table_name = ?",
            [spec.raw_table],
        ).fetchone()[0]
        if loads and present:
            done.events, done.held = _write_events(warehouse, spec, store, dict(loads))
        now = micros(datetime.now(UTC))
        store.executemany(
            "insert or replace into loads values (?, ?, ?)",
            [(load_id, inserted, now) for load_id, inserted in loads],
        )
        done.loads = len(loads)
        # the events of every committed load are in: answers may count through now
        store.execute("insert or replace into state values ('fresh_through', ?)", [now])
    return done


def _write_events(
    warehouse: Any, spec: FreshSpec, store: sqlite3.Connection, inserted: dict[str, int]
) -> tuple[int, int]:
    """The counted events of these loads ({load id: inserted at}) into the store;
    (events written, users held)."""
    load_ids = list(inserted)
    table = f"raw.{quote(spec.raw_table)}"
    marks = ", ".join("?" for _ in load_ids)
    rows = warehouse.execute(
        f"""
        with mart as (
            select _dlt_load_id as load_id, _loaded_at, _segment, _line, {spec.mart_select()}
            from {table} where _dlt_load_id in ({marks})
        )
        select load_id, {spec.inputs_select()}
        from mart
        where {quote(spec.key)} is not null and {quote(spec.id)} is not null and ({spec.valid})
        qualify row_number() over (partition by {quote(spec.id)} order by {LINEAGE_ORDER}) = 1
        """,
        load_ids,
    ).fetchall()
    older = _older_copies(warehouse, spec, store, load_ids, [r[1] for r in rows]) if rows else set()
    kept = [(inserted[r[0]], *r) for r in rows if r[1] not in older]
    width = len(spec.features)
    store.executemany(
        f"insert or replace into events (inserted, load_id, id, key, time, "
        f"{', '.join(f'f{i}' for i in range(width))}) "
        f"values ({', '.join('?' for _ in range(5 + width))})",
        kept,
    )
    held = {(r[2], r[0], inserted[r[0]]) for r in rows if r[1] in older}
    store.executemany("insert or ignore into held values (?, ?, ?)", held)
    return len(kept), len(held)


def _older_copies(
    warehouse: Any, spec: FreshSpec, store: sqlite3.Connection, load_ids: list[str], ids: list[str]
) -> set[str]:
    """Ids of new events that raw also holds from earlier loads under another raw key
    (raw collapses equal keys; only keys that normalise alike can meet).

    Whether raw holds any key its normalisation changes is kept in the store, so
    the common case (clean keys) costs one pass over the new rows, not over raw."""
    table = f"raw.{quote(spec.raw_table)}"
    normalised = spec.columns[spec.id]
    marks = ", ".join("?" for _ in load_ids)
    if spec.raw_key is not None:
        changed = f"({normalised}) is distinct from cast({quote(spec.raw_key)} as varchar)"
        clean = _state(store, "raw_keys_clean", None)
        if clean is None:  # first sync: once over raw
            clean = not warehouse.execute(
                f"select count(*) from {table} where _dlt_load_id not in ({marks}) and {changed}",
                load_ids,
            ).fetchone()[0]
        new_clean = not warehouse.execute(
            f"select count(*) from {table} where _dlt_load_id in ({marks}) and {changed}",
            load_ids,
        ).fetchone()[0]
        store.execute(
            "insert or replace into state values ('raw_keys_clean', ?)", [clean and new_clean]
        )
        if clean and new_clean:
            return set()
    found = warehouse.execute(
        f"select distinct ({normalised}) from {table} "
        f"where _dlt_load_id not in ({marks}) and ({normalised}) in (select unnest(?))",
        [*load_ids, ids],
    ).fetchall()
    return {r[0] for r in found}


def describe(analytics: Any, warehouse: Any, spec: FreshSpec) -> Snapshot | None:
    """The published snapshot as the store needs it; `analytics`: a DuckDB connection whose
    default catalog is the published file, `warehouse`: one to the warehouse. None when the
    file has no publication."""
    try:
        row = analytics.execute(
            "select published_at, dlt_load_ids from meta.publication"
        ).fetchone()
    except duckdb.CatalogException:
        return None
    if row is None:
        return None
    try:
        as_of = analytics.execute(
            f"select max(features_as_of) from marts.{quote(spec.table)}"
        ).fetchone()[0]
    except (duckdb.BinderException, duckdb.CatalogException):  # no as-of: none held by time
        as_of = None
    covered = warehouse.execute(
        "select coalesce(max(epoch_us(inserted_at)), 0) from raw._dlt_loads "
        "where load_id in (select unnest(?::varchar[]))",
        [list(row[1] or [])],
    ).fetchone()[0]
    return Snapshot(micros(row[0]), micros(as_of) if as_of is not None else None, int(covered))


def start(path: Path, spec: FreshSpec, snapshot: Snapshot) -> None:
    """A new store against the snapshot being served: the loads it holds are covered (none
    of their events is written), the next publish drops nothing of it."""
    with writing(path, spec) as store:
        store.execute(
            "insert or replace into state values ('covered_until', ?)", [snapshot.covered]
        )
        store.execute(
            "insert or replace into state values ('pending_drop', ?)",
            [json.dumps(list(astuple(snapshot)))],
        )


def published(path: Path, spec: FreshSpec, snapshot: Snapshot) -> int:
    """After a publish: drop what the *previous* snapshot holds (a reader may still serve
    that one until it swaps; never the one before it), and remember this one for the next
    publish. Returns the events dropped."""
    if not path.exists():
        return 0
    with writing(path, spec) as store:
        previous = _state(store, "pending_drop", None)
        dropped = 0
        if previous is not None:
            before = Snapshot(*json.loads(previous))
            limit = before.as_of if before.as_of is not None else -(2**62)
            dropped = store.execute(
                "delete from events where inserted <= ? and time <= ?", [before.covered, limit]
            ).rowcount
            store.execute("delete from loads where inserted <= ?", [before.covered])
            store.execute("delete from held where inserted <= ?", [before.covered])
            store.execute(
                "insert or replace into state values ('covered_until', ?)", [before.covered]
            )
            store.execute(
                "insert or replace into state values ('dropped_snapshot', ?)",
                [before.published_at],
            )
        store.execute(
            "insert or replace into state values ('pending_drop', ?)",
            [json.dumps(list(astuple(snapshot)))],
        )
    return dropped


def forget(path: Path, spec: FreshSpec, keys: Iterable[int]) -> int:
    """Erase users from the store; returns the events deleted."""
    if not path.exists():
        return 0
    keys = [(k,) for k in keys]
    with writing(path, spec) as store:
        before = store.total_changes
        store.executemany("delete from events where key = ?", keys)
        store.executemany("delete from held where key = ?", keys)
        return store.total_changes - before


def _state(con: sqlite3.Connection, name: str, default: Any) -> Any:
    row = con.execute("select value from state where name = ?", [name]).fetchone()
    return default if row is None else row[0]


def micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def from_micros(value: int) -> datetime:
    """Epoch microseconds as the marts' naive UTC timestamp."""
    seconds, micros = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros, tzinfo=None)


# --------------------------------------------------------------------------- reading


@dataclass
class Aggregate:
    """One feature's exact state: a count, a sum, (n, mean, M2) or a latest time."""

    n: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    latest: int | None = None

    def add(self, value: float | None) -> None:
        """One event's input (Welford)."""
        if value is None:
            return
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def merge(self, other: Aggregate) -> Aggregate:
        """Two disjoint sets of events (Chan et al.): exact up to rounding, no drift."""
        n = self.n + other.n
        if other.n == 0:
            mean, m2 = self.mean, self.m2
        elif self.n == 0:
            mean, m2 = other.mean, other.m2
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * other.n / n
            m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        latest = max((t for t in (self.latest, other.latest) if t is not None), default=None)
        return Aggregate(n, mean, m2, latest)


def finish(feature: Feature, state: Aggregate, as_of: datetime, decimals: int) -> Any:
    """The served value from its state, as the build computes it."""
    if feature.aggregate == "count":
        return int(round(state.n))
    if feature.aggregate == "sum":
        return round(state.mean * state.n, decimals) if state.n else None
    if feature.aggregate == "mean":
        return round(state.mean, decimals) if state.n else None
    if feature.aggregate == "std":
        return round(math.sqrt(state.m2 / (state.n - 1)), decimals) if state.n >= 2 else None
    if state.latest is None:  # days_since_last: day boundaries, as dbt.datediff('day')
        return None
    return (as_of.date() - from_micros(state.latest).date()).days


def event_state(feature: Feature, inputs: Iterable[float | None]) -> Aggregate:
    """The state of one user's fresh events for one feature."""
    state = Aggregate()
    for value in inputs:
        if value is None:
            continue
        if feature.aggregate == "count":
            state.n += value
        elif feature.aggregate == "days_since_last":
            state.latest = int(value) if state.latest is None else max(state.latest, int(value))
        else:
            state.add(value)
    return state


@dataclass
class FreshRows:
    """What the store holds for some keys, read in one transaction."""

    fresh_through: int | None = None  # epoch microseconds: every load committed by then is in
    dropped_snapshot: int | None = None  # published_at of the last snapshot dropped from it
    events: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # key -> rows
    held: set[int] = field(default_factory=set)


# Positions in an `events` row: id, key, load_id, inserted, time, f0, f1, ...
EVENT_LOAD, EVENT_TIME, EVENT_INPUTS = 2, 4, 5


class Reader:
    """The API's read side: one read-only connection, queried per request (WAL: it never
    waits on a write and sees the last committed load)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None

    def rows(self, keys: Sequence[int]) -> FreshRows:
        con = self._connection()
        if con is None:
            return FreshRows()
        wanted = sorted(set(keys))
        if len(wanted) == 1:
            where, params = "key = ?", wanted
        else:
            where, params = "key in (select value from json_each(?))", [json.dumps(wanted)]
        try:
            con.execute("begin")
            try:
                state = dict(con.execute("select name, value from state").fetchall())
                found = con.execute(f"select * from events where {where}", params).fetchall()
                held = con.execute(f"select key from held where {where}", params).fetchall()
            finally:
                con.execute("commit")
        except sqlite3.OperationalError:  # not created yet
            return FreshRows()
        rows = FreshRows(
            state.get("fresh_through"),
            state.get("dropped_snapshot"),
            held={h[0] for h in held},
        )
        for row in found:
            rows.events.setdefault(row[1], []).append(row)
        return rows

    def _connection(self) -> sqlite3.Connection | None:
        if self._con is None:
            if not self.path.exists():
                return None
            # not mode=ro: a WAL reader may have to create the -shm file; it only reads
            self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

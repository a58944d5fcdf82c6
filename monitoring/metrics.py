"""Per-table quality metrics, computed inside DuckDB in a few scans of a table.

Scan 1 is one aggregate: row count, per-column non-null counts, the distinct
key count (skipped when a dbt `unique` test proved the key on this build, see
Target.key_proven_unique), quartiles of non-integer numeric columns, the
range of integer ones and the newest timestamp. Integer columns then get
their quartiles in one more query (integer_quartiles). Scan 2 counts values
outside the IQR bounds; a column with `outlier_group_by` meta gets its own
queries with fences per group. No table rows reach Python.

What a scan found is kept (Aggregates, monitoring/state.py). An incremental
run (`--incremental`, the pipeline's runs between full checks) reads no table
that did not change since, and counts the outliers of a changed one against
the stored fences instead of sorting every value for new quartiles: the
fences are as old as the last full measurement, and the report says so.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from warehouse.sql import quote, relation

from .config import Thresholds
from .manifest import FAILED_TEST_STATUSES, WARNED_TEST_STATUSES, Target

OK, WARN, ERROR = "ok", "warn", "error"
# How a table's aggregates were had: a scan with fresh quartile fences, a scan
# counting outliers against stored fences, or the stored aggregates of a table
# that did not change.
# How a table's aggregates were had: a scan with fresh fences, a scan with the stored
# fences, the new rows of an append-only table added to the stored ones, or none read.
FULL, SCANNED, PROBED, REUSED = "full", "scanned", "probed", "reused"
DLT_PREFIX = "_dlt_"
LOAD_TIME_COLUMN = "_loaded_at"
INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
# An integer column whose values span at most this many steps gets its exact
# quartiles from a count per value (a small hash aggregate) instead of
# quantile_cont, which materialises and partially sorts every value.
SMALL_INTEGER_RANGE = 4096
NUMERIC_TYPES = INTEGER_TYPES | {"FLOAT", "REAL", "DOUBLE"}


@dataclass
class Metric:
    """One measured value with the threshold it was judged against."""

    model: str
    column: str | None
    metric: str
    value: float | None
    threshold: float | None = None
    status: str = OK
    message: str = ""


@dataclass
class Measurement:
    """Everything measured on one table in one run."""

    target: Target
    exists: bool
    metrics: list[Metric] = field(default_factory=list)
    scans: int = 0
    seconds: float = 0.0
    how: str = FULL
    stored: Stored | None = None  # what the next incremental run starts from

    def value(self, metric: str, column: str | None = None) -> float | None:
        for m in self.metrics:
            if m.metric == metric and m.column == column:
                return m.value
        return None


def is_numeric(data_type: str) -> bool:
    return data_type.upper() in NUMERIC_TYPES or data_type.upper().startswith("DECIMAL")


def is_temporal(data_type: str) -> bool:
    upper = data_type.upper()
    return upper.startswith("TIMESTAMP") or upper == "DATE"


def _column_opted_out(meta: dict[str, Any]) -> bool:
    return str(meta.get("monitor", True)).strip().lower() in {"false", "0", "no", "off"}


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of a table or view in the warehouse's own catalog, in order."""
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = current_database() and table_schema = ? and table_name = ? "
        "order by ordinal_position",
        [schema, table],
    ).fetchall()


class DltLoads:
    """dlt's `_dlt_loads` per schema: which load wrote a table and how the latest load ended."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._cache: dict[str, dict[str, tuple[str, int, datetime | None]]] = {}

    def loads(self, schema: str) -> dict[str, tuple[str, int, datetime | None]]:
        if schema not in self._cache:
            rows: list[tuple[Any, ...]] = []
            if table_columns(self.con, schema, "_dlt_loads"):
                rows = self.con.execute(
                    f"select load_id, schema_name, status, inserted_at "
                    f"from {relation(schema, '_dlt_loads')}"
                ).fetchall()
            self._cache[schema] = {
                str(load_id): (str(name), int(status), _aware(inserted))
                for load_id, name, status, inserted in rows
            }
        return self._cache[schema]

    def latest(self, schema: str, schema_name: str) -> tuple[str, int] | None:
        """The newest load of one dlt schema (load ids sort by time) and its status."""
        ids = [i for i, (name, _, _) in self.loads(schema).items() if name == schema_name]
        if not ids:
            return None
        newest = max(ids)
        return newest, self.loads(schema)[newest][1]


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rate_metric(
    model: str,
    column: str | None,
    metric: str,
    count: int,
    total: int,
    threshold: float,
    level: str,
) -> Metric:
    """A rate judged by the contract: exactly at the threshold passes, strictly above fails."""
    if total == 0:
        return Metric(model, column, metric, None, threshold, OK, "empty: no rate")
    rate = count / total
    status = level if rate > threshold else OK
    where = f"{model}.{column}" if column else model
    message = f"{metric} of {where} is {rate:.2%} ({count}/{total}), threshold {threshold:.2%}"
    return Metric(model, column, metric, rate, threshold, status, message)


def _timestamp_source(
    target: Target, columns: dict[str, str]
) -> tuple[str | None, str | None, str]:
    """(column, SQL max expression, label) freshness is measured on, by precedence.

    meta.monitor_timestamp_column, else `_loaded_at`, else the source's
    loaded_at_field; a column that is not a timestamp is cast (bad values null).
    """
    for column in (target.timestamp_column, LOAD_TIME_COLUMN, target.loaded_at_field):
        if column and column in columns:
            expr = quote(column)
            if not is_temporal(columns[column]):
                expr = f"try_cast({expr} as timestamptz)"
            return column, f"epoch(max({expr}))", column
    return None, None, ""


def integer_quartiles(
    con: duckdb.DuckDBPyConnection, table: str, ranges: dict[str, list[int | None]]
) -> dict[str, list[float] | None]:
    """Exact [q1, q3] (as quantile_cont) of integer columns, given their [min, max], in one query.

    A column spanning at most SMALL_INTEGER_RANGE steps is counted per value
    and interpolated here; a wider one goes to quantile_cont.
    """
    small = [
        c
        for c, (low, high) in ranges.items()
        if low is not None and high - low <= SMALL_INTEGER_RANGE
    ]
    wide = [c for c, (low, _) in ranges.items() if low is not None and c not in small]
    select = [f"histogram({quote(c)})" for c in small] + [
        f"quantile_cont({quote(c)}::double, [0.25, 0.75])" for c in wide
    ]
    out: dict[str, list[float] | None] = {c: None for c in ranges}
    if not select:
        return out
    row = con.execute(f"select {', '.join(select)} from {table}").fetchone()
    assert row is not None
    for c, counts in zip(small, row, strict=False):
        out[c] = _interpolated_quartiles(counts) if counts else None
    for c, value in zip(wide, row[len(small) :], strict=True):
        out[c] = value
    return out


def _interpolated_quartiles(counts: dict[int, int]) -> list[float]:
    """q1 and q3 of the values `counts` tallies, interpolated like quantile_cont."""
    values = sorted(counts)
    ends = list(itertools.accumulate(counts[v] for v in values))  # 1 + last position of each

    def at(position: int) -> float:
        return float(values[bisect.bisect_right(ends, position)])

    out = []
    for q in (0.25, 0.75):
        position = q * (ends[-1] - 1)
        below = math.floor(position)
        low, high = at(below), at(math.ceil(position))
        out.append(low + (position - below) * (high - low))
    return out


def group_fences(
    con: duckdb.DuckDBPyConnection, table: str, column: str, group: str, factor: float
) -> list[list[Any]]:
    """[group, low, high]: 1.5×IQR fences per group (column meta `outlier_group_by`).

    Categories on different scales would make one global fence flag a whole
    category; the dbt `outlier_rate` test reads the same meta key. Groups are
    named by their text, so fences of any group column keep as JSON.
    """
    col, key = quote(column), quote(group)
    rows = con.execute(
        f"""
        select grp, q[1] - ? * (q[2] - q[1]), q[2] + ? * (q[2] - q[1])
        from (
            select {key}::varchar as grp, quantile_cont({col}::double, [0.25, 0.75]) as q
            from {table}
            where {col} is not null
            group by {key}
        )
        order by grp nulls last
        """,
        [factor, factor],
    ).fetchall()
    return [list(row) for row in rows]


def count_grouped_outliers(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    group: str,
    fences: list[list[Any]],
) -> tuple[int, int]:
    """(values outside their group's fences, values of a group that has no fence)."""
    col, key = quote(column), quote(group)
    row = con.execute(
        f"""
        with fences as (
            select unnest(?::varchar[]) as grp, unnest(?::double[]) as low,
                unnest(?::double[]) as high
        )
        select
            count(*) filter (where t.{col}::double < f.low or t.{col}::double > f.high),
            count(*) filter (where f.low is null and t.{col} is not null)
        from {table} as t
        left join fences as f on t.{key}::varchar is not distinct from f.grp
        """,
        [[f[0] for f in fences], [f[1] for f in fences], [f[2] for f in fences]],
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Layout:
    """What is measured on one table, from its columns, meta and the thresholds."""

    table: str  # the relation, quoted
    cols: dict[str, str]
    measured: list[str]  # columns with a missing rate
    key: list[str] | None
    row_columns: list[str]  # without a key, a duplicate repeats all of these
    numeric: list[str]  # columns with an outlier rate
    grouped: dict[str, str]  # numeric column -> the column its fences are per
    factors: dict[str, float]  # numeric column -> the IQR factor of its fences
    ts_column: str | None
    ts_expr: str | None
    ts_label: str
    skip_freshness: bool

    @property
    def globally_fenced(self) -> list[str]:
        return [c for c in self.numeric if c not in self.grouped]

    @property
    def has_load_id(self) -> bool:
        return "_dlt_load_id" in self.cols

    def fingerprint(self) -> str:
        """Changes whenever the stored aggregates of the table would mean something else."""
        parts = [
            sorted(self.cols.items()),
            self.measured,
            self.key,
            self.numeric,
            sorted(self.grouped.items()),
            sorted(self.factors.items()),
            self.ts_expr,
            self.skip_freshness,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def table_layout(target: Target, cols: dict[str, str], thresholds: Thresholds) -> Layout:
    def col_meta(column: str) -> dict[str, Any]:
        return target.column_meta.get(column, {})

    measured = [
        c for c in cols if not c.startswith(DLT_PREFIX) and not _column_opted_out(col_meta(c))
    ]
    key = (
        target.unique_key
        if target.unique_key and all(k in cols for k in target.unique_key)
        else None
    )
    # Identifiers (`<object>_id`, the naming the models follow) are not measures:
    # their spread says nothing about quality, and each quartile costs a sort.
    numeric = [
        c
        for c in measured
        if is_numeric(cols[c]) and c not in (key or []) and not c.endswith("_id")
    ]
    ts_column, ts_expr, ts_label = _timestamp_source(target, cols)
    skip_freshness = target.freshness_disabled and not target.timestamp_column
    if skip_freshness:
        ts_column, ts_expr, ts_label = None, None, ""
    return Layout(
        table=relation(target.schema, target.identifier),
        cols=cols,
        measured=measured,
        key=key,
        row_columns=[c for c in cols if not c.startswith(DLT_PREFIX)] or list(cols),
        numeric=numeric,
        grouped={
            c: col_meta(c)["outlier_group_by"]
            for c in numeric
            if col_meta(c).get("outlier_group_by") in cols
        },
        factors={
            c: thresholds.get("outlier_iqr_factor", target.meta, col_meta(c)) for c in numeric
        },
        ts_column=ts_column,
        ts_expr=ts_expr,
        ts_label=ts_label,
        skip_freshness=skip_freshness,
    )


@dataclass
class Aggregates:
    """What one measurement of a table found: the inputs of its metrics, stored as JSON.

    `fences` are each numeric column's outlier bounds: [low, high], or
    [[group, low, high], ...] for a column fenced per group; `fences_at` says
    when each column's quartiles were computed (ISO UTC).
    """

    rows: int
    non_null: dict[str, int]
    duplicates: int
    fences: dict[str, Any]
    fences_at: dict[str, str]
    outliers: dict[str, int]
    newest_epoch: float | None  # the newest row's time, for freshness
    newest_label: str  # where that time comes from ("" = freshness not measured)
    latest_load_id: str | None
    measured_at: str  # when this table was scanned (ISO UTC)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Aggregates:
        return cls(**json.loads(text))


def scan_table(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    shape: Layout,
    dlt_loads: DltLoads | None = None,
    stored: Aggregates | None = None,
) -> tuple[Aggregates, int]:
    """The aggregates of the whole table, and how many queries read it.

    With `stored` aggregates, outliers are counted against their fences and no
    quartile is computed, except for a column (or a group) without a fence.
    """
    table, scanned_at = shape.table, datetime.now(UTC).isoformat()
    stored_fences, stored_at = (stored.fences, stored.fences_at) if stored else ({}, {})
    unique_by = target.key_proven_unique()
    key = shape.key
    select = ["count(*)"] + [f"count({quote(c)})" for c in shape.measured]
    if unique_by is not None:
        select.append("0")
    elif key and len(key) == 1:
        select.append(f"count({quote(key[0])}) - count(distinct {quote(key[0])})")
    else:
        fields = ", ".join(quote(c) for c in (key or shape.row_columns))
        select.append(f"count(*) - count(distinct row({fields}))")
    fresh = [c for c in shape.globally_fenced if c not in stored_fences]
    integers = [c for c in fresh if shape.cols[c].upper() in INTEGER_TYPES]
    select += [
        f"[min({quote(c)}), max({quote(c)})]"
        if c in integers
        else f"quantile_cont({quote(c)}::double, [0.25, 0.75])"
        for c in fresh
    ]
    if shape.ts_expr:
        select.append(shape.ts_expr)
    if shape.has_load_id:
        select.append(f"max({quote('_dlt_load_id')})")
    row = con.execute(f"select {', '.join(select)} from {table}").fetchone()
    assert row is not None
    scans = 1
    values = list(row)
    rows = int(values.pop(0))
    non_null = {c: int(values.pop(0)) for c in shape.measured}
    duplicates = int(values.pop(0) or 0)
    quartiles = {c: values.pop(0) for c in fresh}
    ranges = {c: quartiles.pop(c) for c in integers}
    newest_epoch = values.pop(0) if shape.ts_expr else None
    latest_load_id = values.pop(0) if shape.has_load_id else None
    if ranges:
        quartiles.update(integer_quartiles(con, table, ranges))
        scans += 1

    fences = {c: stored_fences[c] for c in shape.globally_fenced if c in stored_fences}
    fences_at = {c: stored_at[c] for c in fences}
    for c in fresh:
        q = quartiles[c]
        if q is None or q[0] is None or q[1] is None:
            continue
        iqr = q[1] - q[0]
        fences[c] = [q[0] - shape.factors[c] * iqr, q[1] + shape.factors[c] * iqr]
        fences_at[c] = scanned_at
    outliers: dict[str, int] = {}
    if fences:
        cases = [
            f"count(*) filter (where {quote(c)}::double < ? or {quote(c)}::double > ?)"
            for c in fences
        ]
        params = [bound for c in fences for bound in fences[c]]
        counts = con.execute(f"select {', '.join(cases)} from {table}", params).fetchone()
        assert counts is not None
        scans += 1
        outliers = {c: int(n) for c, n in zip(fences, counts, strict=True)}
    for c, group in shape.grouped.items():
        unfenced = 1
        if c in stored_fences:
            fences[c], fences_at[c] = stored_fences[c], stored_at[c]
            outliers[c], unfenced = count_grouped_outliers(con, table, c, group, fences[c])
            scans += 1
        if unfenced:  # no fences yet, or a new group: its quartiles are needed
            fences[c], fences_at[c] = (
                group_fences(con, table, c, group, shape.factors[c]),
                scanned_at,
            )
            outliers[c], _ = count_grouped_outliers(con, table, c, group, fences[c])
            scans += 2

    label = shape.ts_label
    if newest_epoch is None and not shape.skip_freshness and shape.ts_column is None:
        newest, label = _newest_without_timestamps(target, latest_load_id, dlt_loads)
        newest_epoch = newest.timestamp() if newest else None
    aggregates = Aggregates(
        rows=rows,
        non_null=non_null,
        duplicates=duplicates,
        fences=fences,
        fences_at=fences_at,
        outliers=outliers,
        newest_epoch=None if newest_epoch is None else float(newest_epoch),
        newest_label=label,
        latest_load_id=None if latest_load_id is None else str(latest_load_id),
        measured_at=scanned_at,
    )
    return aggregates, scans


def probe_appended(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    shape: Layout,
    stored: Aggregates,
    dlt_loads: DltLoads | None = None,
) -> tuple[Aggregates, int] | None:
    """The aggregates of a dlt-loaded table that only grew since `stored`, from its new rows.

    Rows loaded after the stored `latest_load_id` are the new ones; the table only
    grew when the older rows are exactly as many as stored (a delete, an erasure or
    a merge that replaced a row changes their count). Counts and outliers (against
    the stored fences) are the stored ones plus the new rows'; a one-column key's
    duplicates add the new keys' copies, their old keys found by probing the key
    column with the new keys. Equal to `scan_table` with the same stored fences on
    the same table (tests/monitoring). None when that cannot hold: no load ids, a
    composite key or whole-row duplicates, a column or group without a fence, or
    a table that did not only grow; the caller scans it instead.
    """
    latest = stored.latest_load_id
    unique_by = target.key_proven_unique()
    key = shape.key
    single_key = key is not None and len(key) == 1
    globally = shape.globally_fenced
    if (
        not shape.has_load_id
        or latest is None
        or (unique_by is None and not single_key)
        or any(c not in stored.fences for c in shape.numeric)
    ):
        return None
    table, load = shape.table, quote("_dlt_load_id")
    new = f"(select * from {table} where {load} > {literal(latest)})"
    (old_rows,) = con.execute(
        f"select count(*) from {table} where {load} <= ?", [latest]
    ).fetchone() or (None,)
    if old_rows != stored.rows:
        return None
    select = ["count(*)"] + [f"count({quote(c)})" for c in shape.measured]
    if unique_by is None and key is not None:
        k = quote(key[0])
        select.append(
            f"count({k}) - count(distinct {k}) + (select count(distinct {k}) from {table} "
            f"where {load} <= {literal(latest)} and {k} in (select {k} from {new}))"
        )
    select += [
        f"count(*) filter (where {quote(c)}::double < ? or {quote(c)}::double > ?)"
        for c in globally
    ]
    params = [bound for c in globally for bound in stored.fences[c]]
    if shape.ts_expr:
        select.append(shape.ts_expr)
    select.append(f"max({load})")
    row = con.execute(f"select {', '.join(select)} from {new}", params).fetchone()
    assert row is not None
    scans = 2
    values = list(row)
    added = int(values.pop(0))
    non_null = {c: stored.non_null.get(c, 0) + int(values.pop(0)) for c in shape.measured}
    duplicates = 0 if unique_by is not None else stored.duplicates + int(values.pop(0) or 0)
    outliers = {c: stored.outliers.get(c, 0) + int(values.pop(0)) for c in globally}
    newest = values.pop(0) if shape.ts_expr else None
    newest_load = values.pop(0)
    for c, group in shape.grouped.items():
        found, unfenced = count_grouped_outliers(con, new, c, group, stored.fences[c])
        scans += 1
        if unfenced:  # a new group: its quartiles need the whole table
            return None
        outliers[c] = stored.outliers.get(c, 0) + found
    if newest is not None and stored.newest_epoch is not None:
        newest = max(float(newest), stored.newest_epoch)
    elif newest is None:
        newest = stored.newest_epoch
    latest_load_id = latest if newest_load is None else str(newest_load)
    label = shape.ts_label
    if shape.ts_expr is None and not shape.skip_freshness and shape.ts_column is None:
        when, label = _newest_without_timestamps(target, latest_load_id, dlt_loads)
        newest = when.timestamp() if when else None
    aggregates = Aggregates(
        rows=stored.rows + added,
        non_null=non_null,
        duplicates=duplicates,
        fences=stored.fences,
        fences_at=stored.fences_at,
        outliers=outliers,
        newest_epoch=None if newest is None else float(newest),
        newest_label=label,
        latest_load_id=latest_load_id,
        measured_at=datetime.now(UTC).isoformat(),
    )
    return aggregates, scans


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _newest_without_timestamps(
    target: Target, latest_load_id: Any, dlt_loads: DltLoads | None
) -> tuple[datetime | None, str]:
    """A table without a timestamp column is as new as its last dlt load, or dbt build."""
    if latest_load_id is not None and dlt_loads is not None:
        load = dlt_loads.loads(target.schema).get(str(latest_load_id))
        return (load[2], "_dlt_loads.inserted_at") if load else (None, "")
    if target.built_at is not None:
        return target.built_at, "dbt build time"
    return None, ""


@dataclass
class Stored:
    """The last measurement of a table kept in the warehouse (monitoring/state.py)."""

    version: str | None
    fingerprint: str
    aggregates: Aggregates


def measure_table(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    thresholds: Thresholds,
    now: datetime,
    dlt_loads: DltLoads | None = None,
    version: str | None = None,
    stored: Stored | None = None,
) -> Measurement:
    """Every metric of one table, from a scan or from its stored aggregates.

    With `stored` (an incremental run), a table whose `version` and layout are
    those stored is not read at all, an append-only one that grew gets its new
    rows added (probe_appended), and another changed one is scanned with the
    stored fences. Without it every table is scanned and fenced afresh.
    """
    started = time.perf_counter()
    name = target.name
    cols = dict(table_columns(con, target.schema, target.identifier))
    if not cols:
        level = ERROR if target.kind == "model" else WARN
        missing = Metric(
            name, None, "table_exists", 0.0, 1.0, level, f"{name} is not in the warehouse"
        )
        return Measurement(target, False, [missing], 0, time.perf_counter() - started)
    shape = table_layout(target, cols, thresholds)
    fingerprint = shape.fingerprint()
    usable = stored if stored is not None and stored.fingerprint == fingerprint else None
    if usable is not None and version is not None and usable.version == version:
        aggregates, scans, how = usable.aggregates, 0, REUSED
    else:
        prior = usable.aggregates if usable is not None else None
        probed = probe_appended(con, target, shape, prior, dlt_loads) if prior else None
        if probed is not None:
            (aggregates, scans), how = probed, PROBED
        else:
            aggregates, scans = scan_table(con, target, shape, dlt_loads, prior)
            how = SCANNED if prior is not None else FULL
    measurement = Measurement(
        target,
        True,
        judge(target, shape, aggregates, thresholds, now, dlt_loads, len(cols)),
        scans,
        time.perf_counter() - started,
        how=how,
        stored=Stored(version, fingerprint, aggregates),
    )
    return measurement


def judge(
    target: Target,
    shape: Layout,
    found: Aggregates,
    thresholds: Thresholds,
    now: datetime,
    dlt_loads: DltLoads | None,
    column_count: int,
) -> list[Metric]:
    """The metrics of one table's aggregates, judged against the thresholds."""
    name, meta, rows = target.name, target.meta, found.rows

    def col_meta(column: str) -> dict[str, Any]:
        return target.column_meta.get(column, {})

    metrics = [
        Metric(name, None, "row_count", float(rows)),
        Metric(name, None, "column_count", float(column_count)),
    ]
    warn_at = thresholds.get("missing_rate_warn", meta)
    nulls_total = sum(rows - n for n in found.non_null.values())
    metrics.append(
        _rate_metric(
            name, None, "missing_rate", nulls_total, rows * len(shape.measured), warn_at, WARN
        )
    )
    for c in shape.measured:
        column_warn_at = thresholds.get("missing_rate_warn", meta, col_meta(c))
        metrics.append(
            _rate_metric(
                name, c, "missing_rate", rows - found.non_null[c], rows, column_warn_at, WARN
            )
        )
    key_label = ", ".join(shape.key) if shape.key else None
    duplicate_rate = _rate_metric(
        name,
        key_label,
        "duplicate_rate",
        found.duplicates,
        rows,
        thresholds.get("duplicate_rate_error", meta),
        ERROR,
    )
    unique_by = target.key_proven_unique()
    if unique_by is not None and rows:
        duplicate_rate.message += f" (dbt test {unique_by.name} passed on this build)"
    metrics.append(duplicate_rate)

    for c in shape.numeric:
        warn_at = thresholds.get("outlier_rate_warn", meta, col_meta(c))
        metric = _rate_metric(
            name, c, "outlier_rate", found.outliers.get(c, 0), found.non_null[c], warn_at, WARN
        )
        if c in shape.grouped:
            metric.message += f"; fences per {shape.grouped[c]}"
        elif c in found.fences:
            low, high = found.fences[c]
            metric.message += f"; bounds [{low:g}, {high:g}]"
        if c in found.fences_at and found.fences_at[c] != found.measured_at:
            metric.message += f", computed {found.fences_at[c][:19].replace('T', ' ')} UTC"
        metrics.append(metric)

    if found.newest_label:
        newest = (
            None
            if found.newest_epoch is None
            else datetime.fromtimestamp(found.newest_epoch, tz=UTC)
        )
        metrics.append(_freshness(name, found.newest_label, newest, now, thresholds, meta, rows))

    if found.latest_load_id is not None and dlt_loads is not None:
        load = dlt_loads.loads(target.schema).get(found.latest_load_id)
        latest = dlt_loads.latest(target.schema, load[0]) if load else None
        if latest is not None:
            load_id, status = latest
            metrics.append(
                Metric(
                    name,
                    None,
                    "dlt_load_status",
                    float(status),
                    0.0,
                    OK if status == 0 else ERROR,
                    f"latest dlt load {load_id} of schema {load[0]!r} has status {status}"
                    + ("" if status == 0 else " (not loaded)"),
                )
            )
    metrics += _test_metrics(target)
    return metrics


def _freshness(
    model: str,
    label: str,
    newest: datetime | None,
    now: datetime,
    thresholds: Thresholds,
    meta: dict[str, Any],
    rows: int,
) -> Metric:
    warn_at = thresholds.get("freshness_warn_hours", meta)
    error_at = thresholds.get("freshness_error_hours", meta)
    if newest is None:
        status = OK if rows == 0 else WARN
        return Metric(
            model,
            label,
            "freshness_hours",
            None,
            warn_at,
            status,
            f"{model}.{label} has no timestamps",
        )
    hours = (now - newest).total_seconds() / 3600
    status, threshold = OK, warn_at
    if hours > error_at:
        status, threshold = ERROR, error_at
    elif hours > warn_at:
        status = WARN
    message = (
        f"{model} is {hours:.1f} h old (newest {label} {newest:%Y-%m-%d %H:%M:%S}Z), "
        f"threshold {threshold:g} h"
    )
    return Metric(model, label, "freshness_hours", hours, threshold, status, message)


def _test_metrics(target: Target) -> list[Metric]:
    """dbt test outcomes from run_results.json: counts, and which tests failed."""
    if not target.tests:
        return []
    failed = [t for t in target.tests if t.status in FAILED_TEST_STATUSES]
    warned = [t for t in target.tests if t.status in WARNED_TEST_STATUSES]
    name = target.name
    out = [
        Metric(name, None, "dbt_tests_total", float(len(target.tests))),
        Metric(
            name,
            None,
            "dbt_tests_failed",
            float(len(failed)),
            0.0,
            ERROR if failed else OK,
            "failed: " + ", ".join(t.name for t in failed) if failed else "",
        ),
        Metric(
            name,
            None,
            "dbt_tests_warned",
            float(len(warned)),
            0.0,
            WARN if warned else OK,
            "warned: " + ", ".join(t.name for t in warned) if warned else "",
        ),
    ]
    return out

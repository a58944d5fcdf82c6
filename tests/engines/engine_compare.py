"""Build the sample on one engine and compare its marts with the DuckDB build.

The same generated inbox is ingested by `python -m ingestion` (destination
chosen by WAREHOUSE_DESTINATION) and built by `dbt build --target <engine>`
with pinned clock vars, so two engines must produce the same rows: same keys,
exact strings, booleans and integers, floats within 1e-9 relative,
timestamps compared as naive UTC.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from project_env import ROOT, warehouse_env

from demo.api import serve

TOKEN = "engine-token-7c1e"
# Pinned "now"s: every engine renders the same point-in-time features and recency.
DBT_VARS = {"features_as_of": "2026-02-01T00:00:00Z", "quality_now": "2026-01-20T00:00:00Z"}
REL_TOL = 1e-9
# Two engines' float sums may differ in the last bits around zero (e.g. a std of 0).
ABS_TOL = 1e-12

# Every table dbt builds in these schemas is compared, sorted by its key.
SCHEMAS = ("marts", "quarantine")
KEYS: dict[str, tuple[str, ...]] = {
    "marts.dim_users": ("user_id",),
    "marts.fct_events": ("event_id",),
    "marts.fct_orders": ("order_id",),
    "marts.category_stats": ("category",),
    "marts.user_features": ("user_id",),
    "quarantine.quarantine_users": ("row_key",),
    "quarantine.quarantine_events": ("segment", "segment_line"),
    "quarantine.quarantine_orders": ("order_id",),
}
# When the extract ran: wall clock, different on every load by design.
IGNORED_COLUMNS = {"loaded_at"}


@dataclass(frozen=True)
class Table:
    """A table read back from an engine: column names and normalised rows."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def base_env(work: Path) -> dict[str, str]:
    """Env for one engine's build: its own dbt target/log dirs and warehouse file."""
    work.mkdir(parents=True, exist_ok=True)
    return warehouse_env(work, token=TOKEN)


def run(command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def ingest(inbox: Path, env: dict[str, str]) -> None:
    """`python -m ingestion` on the inbox, with the demo orders API running."""
    with serve(inbox, token=TOKEN) as url:
        run(
            [sys.executable, "-m", "ingestion", "--inbox", str(inbox), "--api-url", url],
            env,
        )


def dbt_build(target: str, env: dict[str, str]) -> None:
    dbt = str(Path(sys.executable).with_name("dbt"))
    run([dbt, "build", "--target", target, "--vars", json.dumps(DBT_VARS)], env)


def normalise(value: Any) -> Any:
    """One Python form per logical type, whatever the driver returned."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def make_table(columns: Iterable[str], rows: Iterable[Sequence[Any]]) -> Table:
    names = tuple(str(c).lower() for c in columns)
    keep = [i for i, name in enumerate(names) if name not in IGNORED_COLUMNS]
    return Table(
        tuple(names[i] for i in keep),
        [tuple(normalise(row[i]) for i in keep) for row in rows],
    )


def read_all(
    list_tables: Callable[[str], Iterable[str]], read: Callable[[str], Table]
) -> dict[str, Table]:
    """Every table and view of SCHEMAS, by `schema.table`."""
    return {
        f"{schema}.{name}": read(f"{schema}.{name}")
        for schema in SCHEMAS
        for name in sorted(n.lower() for n in list_tables(schema))
    }


def _same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return type(a) is type(b) and a == b


def compare_tables(name: str, expected: Table, actual: Table) -> list[str]:
    """Differences between the DuckDB table and another engine's, as readable lines."""
    if expected.columns != actual.columns:
        return [f"{name}: columns differ\n  duckdb: {expected.columns}\n  other:  {actual.columns}"]
    if name not in KEYS:
        return [f"{name}: no key in tests/engines/engine_compare.py KEYS"]
    index = [expected.columns.index(k) for k in KEYS[name]]

    def keyed(table: Table) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        by_key = {tuple(row[i] for i in index): row for row in table.rows}
        assert len(by_key) == len(table.rows), f"{name}: duplicate keys"
        return by_key

    left, right = keyed(expected), keyed(actual)
    problems = []
    if len(expected.rows) != len(actual.rows):
        problems.append(f"{name}: {len(expected.rows)} rows on duckdb, {len(actual.rows)} here")
    missing, extra = left.keys() - right.keys(), right.keys() - left.keys()
    if missing or extra:
        problems.append(
            f"{name}: keys only on duckdb {sorted(missing)[:5]}, only here {sorted(extra)[:5]}"
        )
    for key in sorted(left.keys() & right.keys(), key=repr):
        for column, a, b in zip(expected.columns, left[key], right[key], strict=True):
            if not _same_value(a, b):
                problems.append(f"{name} {key} {column}: duckdb {a!r} != {b!r}")
    return problems


def compare(expected: dict[str, Table], actual: dict[str, Table]) -> list[str]:
    """All differences between two engines' builds (empty when they agree)."""
    problems = []
    if expected.keys() != actual.keys():
        problems.append(f"tables differ: duckdb {sorted(expected)}, other {sorted(actual)}")
    for name in sorted(expected.keys() & actual.keys()):
        problems.extend(compare_tables(name, expected[name], actual[name]))
    return problems


def summary(tables: dict[str, Table]) -> dict[str, int]:
    return {name: len(table.rows) for name, table in tables.items()}

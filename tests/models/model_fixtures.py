"""Helpers for the dbt model tests: a hand-made raw layer, a dbt runner, queries.

The raw tables are created with plain SQL (the columns of the sources' raw
layer plus dlt's `_dlt_load_id`/`_dlt_id`), so these tests do not depend on
the ingestion code. Every row is chosen to carry one known defect; the
expected counts in the tests are derived from the rows below by hand.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
DBT = PROJECT_DIR / ".venv" / "bin" / "dbt"

# Pinned so that two builds at different wall-clock times give equal marts.
AS_OF_FAR = "2026-02-01T00:00:00Z"

LOAD_1 = "2026-01-05 00:00:00"
LOAD_2 = "2026-01-07 00:00:00"

RAW_DDL = """
create schema if not exists raw;
create table raw.users (
    user_id text, name text, email text, age text, country text, signup_at text,
    updated_at text, _source_file text, _source_line bigint, _row_key text,
    _loaded_at timestamptz, _dlt_load_id text, _dlt_id text
);
create table raw.events (
    event_id text, user_id text, category text, value text, occurred_at text,
    _segment text, _line bigint, _loaded_at timestamptz, _dlt_load_id text, _dlt_id text
);
create table raw.orders (
    order_id bigint, user_id bigint, product_id bigint, amount double, currency text,
    status text, created_at timestamptz, updated_at timestamptz, _loaded_at timestamptz,
    _dlt_load_id text, _dlt_id text
);
create table raw.products (
    product_id bigint, name text, category text, price double, updated_at timestamptz,
    _loaded_at timestamptz, _dlt_load_id text, _dlt_id text
);
create table raw._rejected_rows (
    source text, resource text, location text, reason text, payload text,
    rejected_at timestamptz, _dlt_load_id text
);
"""

_T0 = "2026-01-01T00:00:00Z"
_T1 = "2026-01-01T01:00:00Z"
_T6 = "2026-01-01T06:00:00Z"
_ANN = ("1", "Ann", "ann@example.com", "30", "DE", _T0, _T0)
_BOB = ("2", "Bob", "  BOB@Example.COM ", "25", "FR", _T1, _T1)
_GUS = ("", "Gus", "gus@example.com", "40", "DE", _T6, _T6)

# (file, line, user_id, name, email, age, country, signup_at, updated_at)
USERS_FILE_1 = [
    ("users-0001.csv", 2, *_ANN),  # superseded by users-0002.csv:2
    ("users-0001.csv", 3, *_BOB),  # valid email after trim + lower
    (
        "users-0001.csv",
        4,
        "3",
        "Cid",
        "cid.example.com",
        "abc",
        "GB",
        "2026-01-01T02:00:00Z",
        "2026-01-01T02:00:00Z",
    ),  # no @, non-numeric age
    (
        "users-0001.csv",
        5,
        "4",
        "Dee",
        "dee@example",
        "",
        "US",
        "2026-01-01T03:00:00Z",
        "2026-01-01T03:00:00Z",
    ),  # no TLD, missing age
    (
        "users-0001.csv",
        6,
        "5",
        "Eve",
        "eve smith@example.com",
        "250",
        "DE",
        "2026-01-01T04:00:00Z",
        "2026-01-01T04:00:00Z",
    ),  # space in email, impossible age
    (
        "users-0001.csv",
        7,
        "6",
        "Fay",
        "fay@gmail.com",
        "-3",
        "FR",
        "2026-01-01T05:00:00Z",
        "2026-01-01T05:00:00Z",
    ),  # impossible age, superseded by users-0002.csv:4
    ("users-0001.csv", 8, *_BOB),  # exact duplicate of line 3
    ("users-0001.csv", 9, *_GUS),  # missing key
    (
        "users-0001.csv",
        10,
        "7",
        "Hal",
        "hal@example.org",
        "40",
        "NL",
        "2026-01-01T07:00:00Z",
        "not-a-date",
    ),  # invalid timestamp
    (
        "users-0001.csv",
        11,
        "8",
        "Ivy",
        "ivy@yahoo.com",
        "51",
        "IT",
        "2026-01-01T08:00:00Z",
        "2026-01-01T08:00:00Z",
    ),
    ("users-0001.csv", 12, *_GUS),  # duplicate of a missing-key line: counts as missing key
]
USERS_FILE_2 = [
    (
        "users-0002.csv",
        2,
        "1",
        "Ann",
        "ann.new@example.com",
        "31",
        "DE",
        "2026-01-01T00:00:00Z",
        "2026-01-02T12:00:00Z",
    ),
    (
        "users-0002.csv",
        3,
        "9",
        "Jon",
        "jon@example.com",
        "36",
        "ES",
        "2026-01-02T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ),  # new user
    (
        "users-0002.csv",
        4,
        "6",
        "Fay",
        "fay@gmail.com",
        "35",
        "FR",
        "2026-01-01T05:00:00Z",
        "2026-01-02T13:00:00Z",
    ),
    (
        "users-0002.csv",
        5,
        "7",
        "Hal",
        "hal@example.org",
        "41",
        "NL",
        "2026-01-01T07:00:00Z",
        "2026-01-02T14:00:00Z",
    ),  # first valid version of user 7
]

# (segment, line, event_id, user_id, category, value, occurred_at)
EVENTS_BATCH_1 = [
    ("events-000001.jsonl", 1, "evt-001", "1", "click", "1.0", "2026-01-03T08:00:00Z"),
    ("events-000001.jsonl", 2, "evt-002", "1", "click", "2.0", "2026-01-03T09:00:00Z"),
    ("events-000001.jsonl", 3, "evt-003", "2", "click", "3.0", "2026-01-03T10:00:00Z"),
    ("events-000001.jsonl", 4, "evt-004", "2", "click", "4.0", "2026-01-04T11:00:00Z"),
    ("events-000001.jsonl", 5, "evt-005", "3", "click", "100.0", "2026-01-04T12:00:00Z"),
    ("events-000001.jsonl", 6, "evt-006", "1", "view", "5.0", "2026-01-04T13:00:00Z"),
    ("events-000001.jsonl", 7, "evt-007", "99", "view", "6.0", "2026-01-04T14:00:00Z"),
    ("events-000001.jsonl", 8, "evt-008", "1", "purchase", "20.0", "2026-01-04T20:00:00Z"),
    ("events-000001.jsonl", 9, "", "1", "click", "1.0", "2026-01-04T00:00:00Z"),
    ("events-000001.jsonl", 10, "evt-010", "2", "search", "1.5", "not-a-time"),
]
EVENTS_BATCH_2 = [
    ("events-000002.jsonl", 1, "evt-011", "1", "click", "2.5", "2026-01-06T08:00:00Z"),
    ("events-000002.jsonl", 2, "evt-012", "9", "add_to_cart", "7.0", "2026-01-06T09:00:00Z"),
    # late: 2.5 days before the first batch's newest event
    ("events-000002.jsonl", 3, "evt-013", "2", "click", "3.5", "2026-01-02T07:00:00Z"),
    ("events-000002.jsonl", 4, "evt-014", "2", "view", "200.0", "2026-01-06T10:00:00Z"),
    ("events-000002.jsonl", 5, "evt-015", "3", "click", "abc", "2026-01-06T11:00:00Z"),
    # re-sent: this newer copy counts, the first load's evt-004 becomes a duplicate
    ("events-000002.jsonl", 6, "evt-004", "2", "click", "4.0", "2026-01-04T11:00:00Z"),
    # not numbers: flagged like "abc", never a value in a mart
    ("events-000002.jsonl", 7, "evt-016", "3", "click", "NaN", "2026-01-06T12:00:00Z"),
    ("events-000002.jsonl", 8, "evt-017", "3", "view", "-Infinity", "2026-01-06T13:00:00Z"),
]

# (order_id, user_id, product_id, amount, currency, status, created_at, updated_at)
ORDERS_BATCH_1 = [
    (1, 1, 1, 10.0, "EUR", "shipped", "2026-01-02 10:00:00", "2026-01-03 10:00:00"),
    (2, 2, 2, 20.0, "USD", "placed", "2026-01-04 10:00:00", "2026-01-04 10:00:00"),
    (3, 42, 1, 30.0, "GBP", "placed", "2026-01-04 11:00:00", "2026-01-04 11:00:00"),  # unknown
    (4, None, 2, 5.0, "EUR", "placed", "2026-01-03 10:00:00", "2026-01-03 10:00:00"),  # no user
]
ORDERS_BATCH_2 = [
    (5, 1, 2, 15.0, "EUR", "placed", "2026-01-06 10:00:00", "2026-01-06 10:00:00"),
    (6, 9, 1, 12.0, "EUR", "delivered", "2026-01-06 12:00:00", "2026-01-06 12:00:00"),
    (7, 1, 1, math.inf, "EUR", "placed", "2026-01-06 13:00:00", "2026-01-06 13:00:00"),
]

PRODUCTS = [
    (1, "Widget", "Tools", 9.99, "2026-01-01 00:00:00"),
    (2, "Book", "Books", 12.5, "2026-01-01 00:00:00"),
    (3, "Lamp", "Home", 30.0, "2026-01-01 00:00:00"),
]


def create_raw(path: Path) -> None:
    """Create the raw schema (empty tables) and the products, as dlt would."""
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(RAW_DDL)
        con.executemany(
            "insert into raw.products values (?, ?, ?, ?, ?::timestamptz, ?::timestamptz, 'l0', ?)",
            [(*row, LOAD_1, f"p{row[0]}") for row in PRODUCTS],
        )


def load_batch(path: Path, batch: int, part: slice = slice(None)) -> None:
    """Append load 1 (first users file, first segment, first orders) or load 2.

    `part` takes only those rows of each table: the rest of the load can be
    appended later with the same loaded_at, as a load that was still arriving.
    """
    users, events, orders, loaded_at = (
        (USERS_FILE_1, EVENTS_BATCH_1, ORDERS_BATCH_1, LOAD_1)
        if batch == 1
        else (USERS_FILE_2, EVENTS_BATCH_2, ORDERS_BATCH_2, LOAD_2)
    )
    users, events, orders = users[part], events[part], orders[part]
    inserts = [
        (
            "insert into raw.users values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::timestamptz, ?, ?)",
            [
                (*row[2:], row[0], row[1], f"{row[0]}:{row[1]}", loaded_at, f"l{batch}", row[0])
                for row in users
            ],
        ),
        (
            "insert into raw.events values (?, ?, ?, ?, ?, ?, ?, ?::timestamptz, ?, ?)",
            [(*row[2:], row[0], row[1], loaded_at, f"l{batch}", f"e{row[1]}") for row in events],
        ),
        (
            "insert into raw.orders values"
            " (?, ?, ?, ?, ?, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?, ?)",
            [(*row, loaded_at, f"l{batch}", f"o{row[0]}") for row in orders],
        ),
    ]
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'")
        for sql, rows in inserts:
            if rows:
                con.executemany(sql, rows)


DbtRunner = Callable[..., subprocess.CompletedProcess[str]]


def make_dbt_runner(workdir: Path) -> DbtRunner:
    """Return run(args, warehouse, vars) running dbt as a subprocess.

    A subprocess, not dbtRunner: in-process dbt can keep the DuckDB file
    locked (dbt-core #11980). Target and log paths are per test directory so
    parallel runs never share partial-parse state.
    """

    def run(
        args: list[str],
        warehouse: Path,
        dbt_vars: dict[str, Any] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "WAREHOUSE_PATH": str(warehouse),
            "DBT_PROFILES_DIR": str(PROJECT_DIR / "profiles"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        command = [
            str(DBT),
            *args,
            "--project-dir",
            str(PROJECT_DIR),
            "--profiles-dir",
            str(PROJECT_DIR / "profiles"),
            "--target-path",
            str(workdir / "target"),
            "--log-path",
            str(workdir / "logs"),
        ]
        if dbt_vars:
            command += ["--vars", json.dumps(dbt_vars)]
        result = subprocess.run(
            command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr}")
        return result

    return run


def copy_warehouse(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run a read-only query against a built warehouse."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def scalar(warehouse: Path, sql: str) -> Any:
    return query(warehouse, sql)[0][0]


def rows_equal(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]) -> bool:
    """Row-by-row equality; floats equal within 1e-9 (aggregation order may differ)."""
    if len(left) != len(right):
        return False
    for row_left, row_right in zip(left, right, strict=True):
        for a, b in zip(row_left, row_right, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif a != b:
                return False
    return True

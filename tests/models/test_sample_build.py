"""`dbt build` on the real sample, loaded by `python -m ingestion`: every count
traces back to the defects the generator says it injected (manifest.json)."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pytest

if TYPE_CHECKING:
    from tests.conftest import Sample


@pytest.fixture(scope="module")
def con(built_warehouse: Sample) -> duckdb.DuckDBPyConnection:
    with duckdb.connect(str(built_warehouse.warehouse), read_only=True) as connection:
        yield connection


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return con.execute(sql).fetchall()[0][0]


def reasons(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    rows = con.execute(
        f"select quarantine_reason, count(*) from quarantine.{table} group by quarantine_reason"
    ).fetchall()
    return dict(rows)


def test_users_trace_back_to_the_manifest(built_warehouse: Sample, con) -> None:
    users = built_warehouse.manifest["users"]
    latest = users["latest"]
    assert scalar(con, "select count(*) from marts.dim_users") == users["distinct_users"]
    assert reasons(con, "quarantine_users") == {
        "duplicate": users["exact_duplicates"],
        "missing_key": users["missing_user_id"],
        "invalid_timestamp": users["invalid_updated_at"],
    }
    superseded = "select count(*) from intermediate.int_users_versioned where not is_current"
    assert scalar(con, superseded) == users["superseded_versions"]
    flags = con.execute(
        """
        select
            count(*) filter (where not is_valid_email),
            count(*) filter (where has_missing_age),
            count(*) filter (where has_non_numeric_age),
            count(*) filter (where has_impossible_age),
            count(*) filter (where has_email_needing_cleanup and is_valid_email),
            count(*) filter (where age is null),
            count(*) filter (where is_age_imputed)
        from marts.dim_users
        """
    ).fetchall()[0]
    missing_ages = latest["missing_age"] + latest["non_numeric_age"] + latest["impossible_age"]
    assert flags == (
        latest["invalid_email"],
        latest["missing_age"],
        latest["non_numeric_age"],
        latest["impossible_age"],
        latest["valid_email_needing_cleanup"],
        missing_ages,
        missing_ages,
    )
    assert (
        scalar(con, "select count(*) from marts.dim_users where email is null")
        == (latest["invalid_email"])
    )


def test_events_trace_back_to_the_manifest(built_warehouse: Sample, con) -> None:
    events = built_warehouse.manifest["events"]
    valid = events["distinct_events"] - events["invalid_occurred_at"]
    assert scalar(con, "select count(*) from marts.fct_events") == valid
    assert reasons(con, "quarantine_events") == {"invalid_timestamp": events["invalid_occurred_at"]}
    outliers = "select count(*) from marts.fct_events where is_value_outlier"
    assert scalar(con, outliers) == events["value_outliers"]
    quarantined = dict(
        con.execute(
            "select category, count(*) from quarantine.quarantine_events group by category"
        ).fetchall()
    )
    stats = dict(con.execute("select category, event_count from marts.category_stats").fetchall())
    assert {c: n + quarantined.get(c, 0) for c, n in stats.items()} == events["by_category"]


def test_orders_and_features_trace_back_to_the_manifest(built_warehouse: Sample, con) -> None:
    manifest = built_warehouse.manifest
    orders = manifest["orders"]
    assert scalar(con, "select count(*) from marts.fct_orders") == (
        orders["rows"] - orders["unknown_user"]
    )
    assert reasons(con, "quarantine_orders") == {"unknown_user": orders["unknown_user"]}
    assert (
        scalar(con, "select count(*) from marts.user_features")
        == (manifest["users"]["distinct_users"])
    )
    # Every valid event and known-user order is counted in exactly one user's features.
    assert scalar(con, "select sum(event_count) from marts.user_features") == scalar(
        con, "select count(*) from marts.fct_events"
    )
    assert scalar(con, "select sum(order_count) from marts.user_features") == scalar(
        con, "select count(*) from marts.fct_orders"
    )


def test_dim_users_carries_each_users_latest_version(built_warehouse: Sample, con) -> None:
    """Recomputed from the CSV files with the csv module: the newest valid updated_at wins."""
    latest: dict[int, tuple[datetime, str]] = {}
    for path in sorted((built_warehouse.inbox / "users").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if len(row) != 7 or None in row.values() or not row["user_id"]:
                    continue  # malformed (rejected at ingest) or missing key (quarantined)
                try:
                    updated_at = datetime.fromisoformat(row["updated_at"])
                except ValueError:
                    continue  # invalid timestamp (quarantined)
                user_id = int(row["user_id"])
                if user_id not in latest or updated_at > latest[user_id][0]:
                    latest[user_id] = (updated_at, row["name"].strip())
    rows = con.execute("select user_id, updated_at, name from marts.dim_users").fetchall()
    assert {user_id: (updated_at, name) for user_id, updated_at, name in rows} == {
        user_id: (updated_at.replace(tzinfo=None), name)
        for user_id, (updated_at, name) in latest.items()
    }

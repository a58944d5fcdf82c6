"""`python -m ingestion` on the generated sample, all four sources, as a user runs it.

Counts are taken independently from the input files (csv, json, sqlite3), not
from the generator's manifest or the product's own bookkeeping.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from tests.conftest import Sample

RAW_TABLES = ("users", "orders", "events", "products", "_rejected_rows")


def summary_rows(stdout: str) -> dict[str, dict[str, str]]:
    """The CLI's summary table, by source."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = dict(
            zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)
        )
        rows[cells["source"]] = cells
    return rows


def csv_records(folder: Path) -> int:
    """Data records in every CSV file (what a CSV parser sees, malformed ones included)."""
    total = 0
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            total += sum(1 for _ in csv.reader(handle)) - 1
    return total


def segment_lines(folder: Path) -> tuple[int, int, set[str]]:
    """(lines, lines that are JSON objects with an event_id, distinct event_ids)."""
    lines, parsable, ids = 0, 0, set()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            lines += 1
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event_id") is not None:
                parsable += 1
                ids.add(event["event_id"])
    return lines, parsable, ids


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def raw_snapshot(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every raw table's rows, sorted, to compare runs exactly."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: sorted(con.execute(f"select * from raw.{table}").fetchall(), key=repr)
            for table in RAW_TABLES
        }


def test_every_input_row_is_in_raw_or_rejected(sample_warehouse: Sample) -> None:
    inbox = sample_warehouse.inbox
    users_in = csv_records(inbox / "users")
    lines, parsable, event_ids = segment_lines(inbox / "events")
    orders_in = len(json.loads((inbox / "orders" / "orders.json").read_text()))
    with sqlite3.connect(inbox / "products" / "products.db") as db:
        products_in = db.execute("select count(*) from products").fetchone()[0]

    with duckdb.connect(str(sample_warehouse.warehouse), read_only=True) as con:

        def rejected(source: str) -> int:
            return count(con, f"select count(*) from raw._rejected_rows where source = '{source}'")

        assert count(con, "select count(*) from raw.users") + rejected("users") == users_in
        assert rejected("users") > 0
        assert count(con, "select count(*) from raw.events") == len(event_ids)
        assert rejected("events") == lines - parsable > 0
        assert count(con, "select count(*) from raw.orders") == orders_in
        assert count(con, "select count(*) from raw.products") == products_in
        orphans = count(
            con,
            "select count(*) from raw.users where _dlt_load_id not in "
            "(select load_id from raw._dlt_loads where status = 0)",
        )
        assert orphans == 0


def test_second_run_changes_nothing_and_new_input_loads_exactly_once(fresh_sample: Sample) -> None:
    inbox = fresh_sample.inbox
    first = summary_rows(fresh_sample.ingest().stdout)
    lines, parsable, event_ids = segment_lines(inbox / "events")
    assert first["users"]["read"] == str(csv_records(inbox / "users"))
    assert first["events"]["read"] == str(lines)
    assert first["events"]["collapsed"] == str(parsable - len(event_ids))
    assert first["events"]["rejected"] == str(lines - parsable)
    before = raw_snapshot(fresh_sample.warehouse)

    second = summary_rows(fresh_sample.ingest().stdout)
    assert all(row["loaded"] == "0" for row in second.values()), second
    assert raw_snapshot(fresh_sample.warehouse) == before

    # New input on every source; the users export gains a column.
    (inbox / "users" / "users-0003.csv").write_text(
        "user_id,name,email,age,country,signup_at,updated_at,loyalty_tier\n"
        "1,Ann Updated,ann@example.com,41,DE,2026-01-01T00:00:00Z,2026-03-01T00:00:00Z,gold\n"
        "90001,New User,new@example.com,30,FR,2026-03-01T00:00:00Z,2026-03-01T00:00:00Z,\n"
        "90002,Bad Row,only-four-fields,30\n",
        encoding="utf-8",
    )
    old_event = next(iter(sorted(event_ids)))
    resent = next(
        line
        for path in sorted((inbox / "events").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if f'"{old_event}"' in line
    )
    new_events = [
        json.dumps(
            {
                "event_id": f"evt-new-{i}",
                "user_id": 1,
                "category": "click",
                "value": 1.5,
                "occurred_at": "2026-03-01T00:00:0" + str(i) + "Z",
            }
        )
        for i in range(3)
    ]
    (inbox / "events" / "events-999999.jsonl").write_text(
        "\n".join([*new_events, resent, "{not json"]) + "\n", encoding="utf-8"
    )
    orders_path = inbox / "orders" / "orders.json"
    orders = json.loads(orders_path.read_text())
    later = (datetime(2027, 1, 1, tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    orders[0] = {**orders[0], "status": "cancelled", "updated_at": later}
    new_order = {**orders[1], "order_id": 10**9, "updated_at": later}
    orders_path.write_text(json.dumps([*orders, new_order]))
    with sqlite3.connect(inbox / "products" / "products.db") as db:
        stamp = (datetime(2027, 1, 1) + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
        db.execute(
            "update products set price = 999.0, updated_at = ? where product_id = 1", [stamp]
        )
        db.execute(
            "insert into products (product_id, name, category, price, updated_at) "
            "values (100000, 'New', 'toys', 1.0, ?)",
            [stamp],
        )

    third = summary_rows(fresh_sample.ingest().stdout)
    assert (third["users"]["loaded"], third["users"]["rejected"]) == ("2", "1")
    assert third["users"]["new columns"] == "users.loyalty_tier"
    assert (third["events"]["loaded"], third["events"]["rejected"]) == ("3", "1")
    assert third["events"]["collapsed"] == "1"
    assert third["orders"]["loaded"] == "2"
    assert third["products"]["loaded"] == "2"

    after = raw_snapshot(fresh_sample.warehouse)
    assert len(after["users"]) == len(before["users"]) + 2
    assert len(after["events"]) == len(before["events"]) + 3
    assert len(after["orders"]) == len(before["orders"]) + 1
    assert len(after["products"]) == len(before["products"]) + 1
    with duckdb.connect(str(fresh_sample.warehouse), read_only=True) as con:
        assert con.execute(
            "select status from raw.orders where order_id = ?", [orders[0]["order_id"]]
        ).fetchall() == [("cancelled",)]
        assert con.execute("select price from raw.products where product_id = 1").fetchall() == [
            (999.0,)
        ]
        assert count(con, f"select count(*) from raw.events where event_id = '{old_event}'") == 1
    # dlt's working folder keeps no copy of what it loaded: it would grow with every load
    pipelines = fresh_sample.warehouse.parent / ".dlt-pipelines"
    assert len(list(pipelines.glob("*/*/load/loaded/*"))) >= 4 * 2  # three runs' packages
    assert [p for p in pipelines.rglob("completed_jobs/*") if p.is_file()] == []


def raw_content(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every raw table's rows, sorted, without what differs between two loads of the same
    input (load ids, load times)."""
    per_load = {"_dlt_load_id", "_dlt_id", "_loaded_at", "rejected_at"}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        out = {}
        for table in RAW_TABLES:
            columns = [
                name
                for (name,) in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'raw' and table_name = ? order by ordinal_position",
                    [table],
                ).fetchall()
                if name not in per_load
            ]
            rows = con.execute(f"select {', '.join(columns)} from raw.{table}").fetchall()
            out[table] = sorted(rows, key=repr)
        return out


def test_full_refresh_of_one_source_keeps_every_row(fresh_sample: Sample) -> None:
    """A refresh reloads the source's rows and rejects once, and leaves the others' alone.

    dlt's refresh drops every table of the source's schema, and raw._rejected_rows is
    in every source's schema; a source's raw table also looks, during the refresh,
    like it holds every row already.
    """
    fresh_sample.ingest()
    before = raw_content(fresh_sample.warehouse)
    rejected = {source for source, *_ in before["_rejected_rows"]}
    assert {"users", "events"} <= rejected

    for source in ("events", "users"):
        refreshed = summary_rows(fresh_sample.ingest("--full-refresh", source).stdout)
        assert refreshed[source]["loaded"] == str(len(before[source])), refreshed
        assert raw_content(fresh_sample.warehouse) == before, f"after --full-refresh {source}"
    fresh_sample.ingest("--full-refresh")
    assert raw_content(fresh_sample.warehouse) == before
    again = summary_rows(fresh_sample.ingest().stdout)
    assert all(row["loaded"] == "0" for row in again.values()), again

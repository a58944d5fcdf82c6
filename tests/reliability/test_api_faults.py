"""Orders API faults from the demo server: correct counts or one clear error, never a hang.

Each case runs the orders source the way `python -m ingestion orders` does
(`ingestion.cli.run_source`, in this process to keep it fast) against the demo
API on 127.0.0.1 with a fault mode, then checks raw.orders and the one-line
error the CLI would print.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from demo.api import start_server
from ingestion.cli import parse_args
from ingestion.kinds import source_options
from ingestion.load import run_source

TOKEN = "api-faults-token-91c2"
ORDERS = 25
PER_PAGE = 10  # 3 pages


def orders() -> list[dict[str, Any]]:
    return [
        {
            "order_id": i,
            "user_id": 100 + i,
            "product_id": 1 + i % 5,
            "amount": 5.0 + i,
            "currency": "EUR",
            "status": "placed",
            "created_at": f"2026-01-01T{i % 24:02d}:00:00Z",
            "updated_at": f"2026-01-02T{i % 24:02d}:00:00Z",
        }
        for i in range(1, ORDERS + 1)
    ]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inbox"
    (folder / "orders").mkdir(parents=True)
    (folder / "orders" / "orders.json").write_text(json.dumps(orders()))
    monkeypatch.setenv("WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("SOURCES__ORDERS__API_TOKEN", TOKEN)
    # the declared endpoint, PER_PAGE orders a page (env holds it as JSON)
    (resource,) = source_options("orders")[1]["resources"]
    endpoint = resource["endpoint"]
    paged = {**endpoint, "params": {**endpoint["params"], "per_page": PER_PAGE}}
    monkeypatch.setenv("SOURCES__ORDERS__RESOURCES", json.dumps([{**resource, "endpoint": paged}]))
    monkeypatch.setenv("SOURCES__ORDERS__REQUEST_TIMEOUT", "0.5")
    monkeypatch.setenv("SOURCES__ORDERS__REQUEST_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("SOURCES__ORDERS__REQUEST_BACKOFF_FACTOR", "0.01")
    return folder


def raw_orders(data_dir: Path) -> tuple[int, int]:
    path = data_dir.parent / "warehouse.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    try:
        found = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = 'orders'"
        ).fetchone()[0]
        if not found:
            return (0, 0)
        return con.execute("select count(*), count(distinct order_id) from raw.orders").fetchone()
    finally:
        con.close()


# (faults, requests the server must have seen): recovered by the retries, exact counts.
RECOVERS = {
    "timeout once": ({"fault": "slow", "delay": 1.5, "fail_first": 1}, 1 + 3),
    "429 burst": ({"status": 429, "retry_after": 0, "fail_first": 2}, 2 + 3),
    "5xx burst": ({"status": 502, "fail_first": 2}, 2 + 3),
    "truncated body once": ({"fault": "truncated", "fail_first": 1}, 1 + 3),
    "html page once": ({"fault": "html", "fail_first": 1}, 1 + 3),
    "empty last page": ({"paging": "empty-last-page"}, 4),
}

# (faults, text of the one-line error, requests the server must have seen).
FAILS = {
    "always slow": ({"fault": "slow", "delay": 1.5, "fail_first": 99}, "Timeout", 3),
    "5xx outage mid-paging": ({"status": 503, "fail_after": 1}, "HTTP 503", 1 + 3),
    "always truncated": ({"fault": "truncated", "fail_first": 99}, "ChunkedEncodingError", 3),
    "wrong content type": ({"fault": "html", "fail_first": 99}, "body that is not JSON", 3),
    "next_page loops back": ({"paging": "loop"}, "orders API paging loops", 3),
}


def run_orders(data_dir: Path, **faults: Any) -> tuple[Any, Any]:
    server = start_server(data_dir, TOKEN, **faults)
    try:
        report = run_source("orders", parse_args(["orders", "--api-url", server.url]))
        return report, server
    finally:
        server.stop()


@pytest.mark.parametrize("case", RECOVERS)
def test_api_fault_is_retried_and_counts_are_exact(data_dir: Path, case: str) -> None:
    faults, requests = RECOVERS[case]
    report, server = run_orders(data_dir, **faults)
    assert (report.status, report.error) == ("ok", None)
    assert report.rows_loaded == ORDERS
    assert raw_orders(data_dir) == (ORDERS, ORDERS)
    assert server.orders_requests == requests


@pytest.mark.parametrize("case", FAILS)
def test_api_fault_fails_clearly_and_loads_nothing(data_dir: Path, case: str) -> None:
    faults, message, requests = FAILS[case]
    report, server = run_orders(data_dir, **faults)
    assert report.status == "failed"
    assert message in report.error and "\n" not in report.error
    assert TOKEN not in report.error
    assert raw_orders(data_dir) == (0, 0)  # a failed run commits nothing
    assert server.orders_requests == requests  # bounded: no endless paging or retrying
    # The API recovers: the next run loads every order once.
    report, _ = run_orders(data_dir)
    assert report.status == "ok" and raw_orders(data_dir) == (ORDERS, ORDERS)

"""The orders dlt source against the demo API: incremental merge, retries, clean failure."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from demo.api import OrdersServer
from ingestion.destination import make_pipeline
from ingestion.kinds import declared_source, source_options

API_TOKEN = "test-token-7c1e"  # conftest's API_TOKEN
ORDERS_COUNT = 25  # conftest's sample: two orders an hour from 2026-01-01T00:00:00Z
ORDERS_START = datetime(2026, 1, 1, tzinfo=UTC)
LAST_UPDATED_AT = ORDERS_START + timedelta(hours=12)
PAGE_SIZE = 7  # 25 orders -> 4 pages
MAX_ATTEMPTS = 3


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("WAREHOUSE_PATH", str(path))
    return path


def sample_resources(page_size: int) -> list[dict[str, Any]]:
    """The declared orders endpoint, `page_size` orders a page."""
    (resource,) = source_options("orders")[1]["resources"]
    endpoint = resource["endpoint"]
    params = {**endpoint["params"], "per_page": page_size}
    return [{**resource, "endpoint": {**endpoint, "params": params}}]


def run_orders(url: str, **overrides: Any) -> dlt.Pipeline:
    """One run of the orders source with fast retries; returns the pipeline."""
    kwargs: dict[str, Any] = {
        "base_url": url,
        "api_token": API_TOKEN,
        "request_timeout": 5,
        "request_max_attempts": MAX_ATTEMPTS,
        "request_backoff_factor": 0.01,
    }
    kwargs.update(overrides)
    pipeline = make_pipeline("orders")
    pipeline.run(declared_source("orders", resources=sample_resources(PAGE_SIZE), **kwargs))
    return pipeline


def query(warehouse: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def raw_orders(warehouse: Path) -> list[tuple]:
    return query(warehouse, "select order_id, status, updated_at from raw.orders order by 1")


def resource_state() -> dict[str, Any]:
    state = make_pipeline("orders").state
    return state.get("sources", {}).get("orders", {}).get("resources", {}).get("orders", {})


def cursor() -> Any:
    value = resource_state().get("cursor")
    return datetime.fromisoformat(value) if value else None


def loaded_rows(pipeline: dlt.Pipeline) -> int:
    return pipeline.last_trace.last_normalize_info.row_counts.get("orders", 0)


def full_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_first_run_loads_every_order_with_types(warehouse: Path, demo_api: OrdersServer) -> None:
    pipeline = run_orders(demo_api.url)

    assert loaded_rows(pipeline) == ORDERS_COUNT
    assert query(warehouse, "select count(*), count(distinct order_id) from raw.orders") == [
        (ORDERS_COUNT, ORDERS_COUNT)
    ]
    assert query(warehouse, "select count(*) from raw.orders where _loaded_at is null") == [(0,)]
    types = dict(
        query(
            warehouse,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'orders'",
        )
    )
    assert {name: types[name] for name in ("order_id", "user_id", "product_id", "amount")} == {
        "order_id": "BIGINT",
        "user_id": "BIGINT",
        "product_id": "BIGINT",
        "amount": "DOUBLE",
    }
    assert {types[name] for name in ("created_at", "updated_at", "_loaded_at")} == {
        "TIMESTAMP WITH TIME ZONE"
    }
    assert resource_state()["last_run"] == {
        "rows_read": ORDERS_COUNT,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "rows_unchanged": 0,
    }
    assert cursor() == LAST_UPDATED_AT
    assert demo_api.orders_requests == 4


def test_second_run_loads_nothing(warehouse: Path, demo_api: OrdersServer) -> None:
    run_orders(demo_api.url)
    before = query(warehouse, "select order_id, status, updated_at, _loaded_at from raw.orders")

    pipeline = run_orders(demo_api.url)

    assert loaded_rows(pipeline) == 0
    assert resource_state()["last_run"]["rows_read"] == 0
    after = query(warehouse, "select order_id, status, updated_at, _loaded_at from raw.orders")
    assert sorted(after) == sorted(before)
    assert len(after) == ORDERS_COUNT
    assert cursor() == LAST_UPDATED_AT


def test_new_and_updated_orders_are_merged(
    warehouse: Path, demo_api: OrdersServer, orders_file: Any
) -> None:
    run_orders(demo_api.url)
    later = LAST_UPDATED_AT + timedelta(hours=1)
    orders = orders_file.read()
    updated_ids = [orders[0]["order_id"], orders[10]["order_id"]]
    for order in orders:
        if order["order_id"] in updated_ids:
            order.update(status="returned", updated_at=orders_file.ts(later))
    orders += [orders_file.make_order(100 + i, later + timedelta(minutes=i)) for i in range(3)]
    orders_file.write(orders)

    pipeline = run_orders(demo_api.url)

    assert loaded_rows(pipeline) == 5
    assert resource_state()["last_run"]["rows_read"] == 5
    assert query(warehouse, "select count(*), count(distinct order_id) from raw.orders") == [
        (ORDERS_COUNT + 3, ORDERS_COUNT + 3)
    ]
    assert query(
        warehouse,
        "select order_id from raw.orders where status = 'returned' order by 1",  # noqa: S608
    ) == [(i,) for i in sorted(updated_ids)]
    assert cursor() == later + timedelta(minutes=2)


def test_transient_500s_are_retried(
    warehouse: Path, orders_data: Path, start_demo_api: Callable[..., OrdersServer]
) -> None:
    server = start_demo_api(orders_data, fail_first=2, status=500)

    pipeline = run_orders(server.url)

    assert loaded_rows(pipeline) == ORDERS_COUNT
    assert server.orders_requests == 2 + 4


def test_429_waits_for_retry_after(
    warehouse: Path, orders_data: Path, start_demo_api: Callable[..., OrdersServer]
) -> None:
    server = start_demo_api(orders_data, fail_first=1, status=429, retry_after=1)

    started = time.monotonic()
    pipeline = run_orders(server.url)
    elapsed = time.monotonic() - started

    # Backoff alone would wait 0.01 s; Retry-After asks for 1 s.
    assert elapsed >= 1.0
    assert loaded_rows(pipeline) == ORDERS_COUNT
    assert server.orders_requests == 1 + 4


def test_failed_run_commits_nothing_and_next_run_catches_up(
    warehouse: Path, orders_file: Any, start_demo_api: Callable[..., OrdersServer]
) -> None:
    healthy = start_demo_api(orders_file.data_dir)
    run_orders(healthy.url)
    before = raw_orders(warehouse)
    later = LAST_UPDATED_AT + timedelta(hours=1)
    new_orders = [orders_file.make_order(200 + i, later) for i in range(10)]
    orders_file.write(orders_file.read() + new_orders)

    broken = start_demo_api(orders_file.data_dir, fail_first=10_000, status=500)
    with pytest.raises(PipelineStepFailed) as failure:
        run_orders(broken.url)

    message = full_error(failure.value)
    assert "HTTP 500" in message
    assert API_TOKEN not in message
    assert broken.orders_requests == MAX_ATTEMPTS
    assert raw_orders(warehouse) == before
    assert cursor() == LAST_UPDATED_AT
    assert resource_state()["last_run"]["rows_read"] == ORDERS_COUNT

    pipeline = run_orders(healthy.url)

    assert loaded_rows(pipeline) == 10
    assert len(raw_orders(warehouse)) == ORDERS_COUNT + 10
    assert cursor() == later


def test_outage_mid_paging_commits_nothing(
    warehouse: Path, orders_data: Path, start_demo_api: Callable[..., OrdersServer]
) -> None:
    # Pages 1 and 2 succeed, page 3 never does: the two pages read must not load.
    broken = start_demo_api(orders_data, fail_after=2, status=503)
    with pytest.raises(PipelineStepFailed) as failure:
        run_orders(broken.url)

    assert "HTTP 503" in full_error(failure.value)
    assert broken.orders_requests == 2 + MAX_ATTEMPTS
    assert query(
        warehouse,
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'orders'",
    ) == [(0,)]
    assert cursor() is None

    healthy = start_demo_api(orders_data)
    pipeline = run_orders(healthy.url)

    assert loaded_rows(pipeline) == ORDERS_COUNT
    assert len(raw_orders(warehouse)) == ORDERS_COUNT
    assert cursor() == LAST_UPDATED_AT


def test_bad_token_fails_at_once_without_leaking_it(
    warehouse: Path, orders_data: Path, start_demo_api: Callable[..., OrdersServer]
) -> None:
    server = start_demo_api(orders_data, token="the-server-token")

    with pytest.raises(PipelineStepFailed) as failure:
        run_orders(server.url)

    message = full_error(failure.value)
    assert "HTTP 401" in message
    assert "SOURCES__ORDERS__API_TOKEN" in message
    assert API_TOKEN not in message
    assert server.orders_requests == 1


def test_unreachable_api_fails_clearly(
    warehouse: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # dlt sets up its logger (level from config, output to stderr) with the first pipeline.
    make_pipeline("orders")
    caplog.set_level(logging.DEBUG, logger="dlt")

    with pytest.raises(PipelineStepFailed) as failure:
        run_orders(f"http://127.0.0.1:{port}")

    message = full_error(failure.value)
    assert "unreachable after retries" in message
    assert f"127.0.0.1:{port}" in message
    assert API_TOKEN not in message
    logs = capfd.readouterr().err + caplog.text
    assert "Making GET request" in logs
    assert API_TOKEN not in logs


def test_frozen_contract_refuses_a_new_field(
    warehouse: Path, demo_api: OrdersServer, orders_file: Any
) -> None:
    run_orders(demo_api.url, schema_contract="freeze")
    before = raw_orders(warehouse)
    later = LAST_UPDATED_AT + timedelta(hours=1)
    orders_file.write(
        orders_file.read() + [orders_file.make_order(300, later, coupon_code="WINTER")]
    )

    with pytest.raises(PipelineStepFailed):
        run_orders(demo_api.url, schema_contract="freeze")

    assert raw_orders(warehouse) == before
    assert cursor() == LAST_UPDATED_AT

    pipeline = run_orders(demo_api.url, schema_contract="evolve")

    assert loaded_rows(pipeline) == 1
    assert query(warehouse, "select coupon_code from raw.orders where order_id = 300") == [
        ("WINTER",)
    ]

"""Orders fixtures for tests/ingestion and tests/demo: a small orders.json and the demo API.

`start_demo_api(data_dir, **faults)` starts a real server on a free port (faults as in
`demo.api.Faults`) and stops every server it started at teardown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from demo.api import OrdersServer, start_server

API_TOKEN = "test-token-7c1e"
ORDERS_COUNT = 25
ORDERS_START = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ("placed", "shipped", "delivered", "cancelled")
CURRENCIES = ("EUR", "USD", "GBP")


def ts(value: datetime) -> str:
    """The API's timestamp form: UTC, second precision, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_order(order_id: int, updated_at: datetime, **overrides: Any) -> dict[str, Any]:
    """One order shaped like the sample's; fields can be overridden."""
    order = {
        "order_id": order_id,
        "user_id": 100 + order_id % 7,
        "product_id": 1 + order_id % 5,
        "amount": round(5 + order_id * 1.25, 2),
        "currency": CURRENCIES[order_id % 3],
        "status": STATUSES[order_id % 4],
        "created_at": ts(updated_at - timedelta(days=1)),
        "updated_at": ts(updated_at),
    }
    order.update(overrides)
    return order


def sample_orders(count: int = ORDERS_COUNT) -> list[dict[str, Any]]:
    """`count` orders, two per hour from ORDERS_START, so updated_at values tie in pairs.

    Order ids run against time order (highest id first) so sorting by
    (updated_at, order_id) is visible in the pages.
    """
    return [make_order(count - i, ORDERS_START + timedelta(hours=i // 2)) for i in range(count)]


def write_orders(data_dir: Path, orders: list[dict[str, Any]]) -> Path:
    """Write `<data_dir>/orders/orders.json` atomically (a running API never sees half a file)."""
    path = data_dir / "orders" / "orders.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(orders, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class OrdersFile:
    """The orders.json of one sample folder, for tests that change it while the API runs."""

    data_dir: Path
    token: str = API_TOKEN
    start: datetime = ORDERS_START
    count: int = ORDERS_COUNT

    def read(self) -> list[dict[str, Any]]:
        path = self.data_dir / "orders" / "orders.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def write(self, orders: list[dict[str, Any]]) -> Path:
        return write_orders(self.data_dir, orders)

    @property
    def auth(self) -> dict[str, str]:
        """Request headers that the demo API accepts."""
        return {"Authorization": f"Bearer {self.token}"}

    @staticmethod
    def make_order(order_id: int, updated_at: datetime, **overrides: Any) -> dict[str, Any]:
        return make_order(order_id, updated_at, **overrides)

    @staticmethod
    def ts(value: datetime) -> str:
        return ts(value)


@pytest.fixture
def orders_file(tmp_path: Path) -> OrdersFile:
    """`<tmp>/inbox/orders/orders.json` holding ORDERS_COUNT sample orders."""
    data_dir = tmp_path / "inbox"
    write_orders(data_dir, sample_orders())
    return OrdersFile(data_dir)


@pytest.fixture
def orders_data(orders_file: OrdersFile) -> Path:
    """The sample folder of `orders_file` (what `--data` of the API takes)."""
    return orders_file.data_dir


@pytest.fixture
def start_demo_api() -> Iterator[Callable[..., OrdersServer]]:
    """Factory: start the demo API on a free port of 127.0.0.1; all are stopped at teardown."""
    servers: list[OrdersServer] = []

    def start(data_dir: Path, token: str = API_TOKEN, **faults: Any) -> OrdersServer:
        server = start_server(data_dir, token, host="127.0.0.1", port=0, **faults)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def demo_api(orders_data: Path, start_demo_api: Callable[..., OrdersServer]) -> OrdersServer:
    """The demo API without faults, serving `orders_data` with API_TOKEN."""
    return start_demo_api(orders_data)

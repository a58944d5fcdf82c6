"""The demo orders API: paging contract, filtering, auth, errors, faults, CLI."""

from __future__ import annotations

import math
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from project_env import ROOT

from demo.api import OrdersServer, serve

API_TOKEN = "test-token-7c1e"  # conftest's API_TOKEN
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ORDERS_COUNT = 25  # conftest's sample: two orders an hour from 2026-01-01T00:00:00Z
ORDERS_START = datetime(2026, 1, 1, tzinfo=UTC)


def ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def get(server: OrdersServer, headers: dict[str, str] | None = AUTH, **params: Any):
    return requests.get(f"{server.url}/orders", params=params, headers=headers, timeout=600)


def test_fixture_matches_these_constants(orders_file: Any) -> None:
    assert (orders_file.token, orders_file.start, orders_file.count) == (
        API_TOKEN,
        ORDERS_START,
        ORDERS_COUNT,
    )


def all_pages(server: OrdersServer, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow next_page from page 1; returns every order and the number of requests."""
    orders: list[dict[str, Any]] = []
    page, requests_made = 1, 0
    while page is not None:
        response = get(server, page=page, **params)
        requests_made += 1
        assert response.status_code == 200, response.text
        body = response.json()
        orders.extend(body["data"])
        page = body["next_page"]
    return orders, requests_made


def expected_order(orders: list[dict[str, Any]]) -> list[int]:
    return [o["order_id"] for o in sorted(orders, key=lambda o: (o["updated_at"], o["order_id"]))]


@pytest.mark.parametrize("per_page", [1, 3, 7, 24, 25, 26, 1000])
def test_every_order_served_once_in_order(
    demo_api: OrdersServer, orders_file: Any, per_page: int
) -> None:
    orders, requests_made = all_pages(demo_api, per_page=per_page)

    ids = [o["order_id"] for o in orders]
    assert len(ids) == ORDERS_COUNT
    assert ids == expected_order(orders_file.read())
    assert requests_made == math.ceil(ORDERS_COUNT / per_page)


def test_default_page_size_is_100(orders_file: Any, start_demo_api: Callable) -> None:
    orders_file.write([orders_file.make_order(i, ORDERS_START) for i in range(1, 251)])
    server = start_demo_api(orders_file.data_dir)

    first = get(server).json()
    orders, requests_made = all_pages(server)

    assert len(first["data"]) == 100
    assert first["next_page"] == 2
    assert len(orders) == 250
    assert requests_made == 3
    assert [o["order_id"] for o in orders] == list(range(1, 251))


def test_updated_since_is_inclusive(demo_api: OrdersServer) -> None:
    # Two orders per hour: hours 0..12 hold 2,2,...,2,1 orders.
    since_5h = ORDERS_START + timedelta(hours=5)

    assert len(all_pages(demo_api, updated_since=ts(since_5h), per_page=4)[0]) == 15
    assert len(all_pages(demo_api, updated_since=since_5h.isoformat(), per_page=4)[0]) == 15
    assert len(all_pages(demo_api, updated_since=ts(since_5h + timedelta(seconds=1)))[0]) == 13
    assert len(all_pages(demo_api, updated_since=ts(ORDERS_START))[0]) == ORDERS_COUNT
    assert len(all_pages(demo_api, updated_since=ts(ORDERS_START + timedelta(hours=12)))[0]) == 1
    after_all = get(demo_api, updated_since=ts(ORDERS_START + timedelta(hours=13))).json()
    assert after_all == {"data": [], "next_page": None}


def test_page_past_the_end_is_empty(demo_api: OrdersServer) -> None:
    assert get(demo_api, page=9, per_page=10).json() == {"data": [], "next_page": None}


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_bad_or_missing_token_is_401(demo_api: OrdersServer, headers: dict | None) -> None:
    response = get(demo_api, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid bearer token"}
    assert API_TOKEN not in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "abc"},
        {"per_page": "0"},
        {"per_page": "1001"},
        {"per_page": "2.5"},
        {"updated_since": "not-a-date"},
        {"updated_since": "2026-01-01T00:00:00"},
        {"updated_since": ""},
        {"page": ["1", "2"]},
    ],
)
def test_bad_parameters_are_400(demo_api: OrdersServer, params: dict[str, Any]) -> None:
    response = get(demo_api, **params)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"error"}


def test_other_paths_are_404(demo_api: OrdersServer) -> None:
    response = requests.get(f"{demo_api.url}/customers", headers=AUTH, timeout=600)

    assert response.status_code == 404
    assert "error" in response.json()


def test_file_changes_are_served_while_running(demo_api: OrdersServer, orders_file: Any) -> None:
    orders = orders_file.read()
    late = ORDERS_START + timedelta(days=2)
    orders[0]["status"] = "refunded"
    orders[0]["updated_at"] = ts(late)
    orders.append(orders_file.make_order(1000, late))
    orders_file.write(orders)

    served = all_pages(demo_api, updated_since=ts(late))[0]

    assert [(o["order_id"], o["status"]) for o in served] == [
        (orders[0]["order_id"], "refunded"),
        (1000, orders_file.make_order(1000, late)["status"]),
    ]
    assert len(all_pages(demo_api)[0]) == ORDERS_COUNT + 1


def test_fail_first_with_retry_after(orders_data: Path, start_demo_api: Callable) -> None:
    server = start_demo_api(orders_data, fail_first=2, status=429, retry_after=1)

    responses = [get(server) for _ in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert [r.headers.get("Retry-After") for r in responses] == ["1", "1", None]
    assert server.orders_requests == 3


def test_fail_rate_is_deterministic(orders_data: Path, start_demo_api: Callable) -> None:
    first = start_demo_api(orders_data, fail_rate=0.5, seed=7)
    second = start_demo_api(orders_data, fail_rate=0.5, seed=7)

    codes_first = [get(first).status_code for _ in range(20)]
    codes_second = [get(second).status_code for _ in range(20)]

    assert codes_first == codes_second
    assert set(codes_first) == {200, 500}


def test_invalid_faults_are_refused(orders_data: Path, start_demo_api: Callable) -> None:
    with pytest.raises(ValueError, match="status"):
        start_demo_api(orders_data, status=404)
    with pytest.raises(ValueError, match="fail_rate"):
        start_demo_api(orders_data, fail_rate=1.5)


def test_cli_serves_on_free_port_and_stops_on_sigterm(orders_data: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.api", "--data", str(orders_data)]
        + ["--port", "0", "--token", API_TOKEN, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"serving on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        assert int(match.group(2)) > 0
        response = requests.get(f"{match.group(1)}/orders", headers=AUTH, timeout=600)
        assert response.status_code == 200
        assert len(response.json()["data"]) == ORDERS_COUNT
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_without_orders_file_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.api", "--data", str(tmp_path)]
        + ["--port", "0", "--token", API_TOKEN],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 2
    assert "no orders file" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_for_the_with_block(orders_data: Path) -> None:
    with serve(orders_data, API_TOKEN) as url:
        response = requests.get(f"{url}/orders", headers=AUTH, timeout=600)
        assert response.status_code == 200
        assert len(response.json()["data"]) == ORDERS_COUNT

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/orders", headers=AUTH, timeout=600)


def test_make_dagster_stops_in_one_line_when_a_port_it_needs_is_taken() -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "demo.free_ports", f"{port}=the demo orders API"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        holder.close()
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: port {port} (the demo orders API) is taken on 127.0.0.1: stop what holds it "
        "(ss -ltnp shows it), then run this again\n"
    )
    free = subprocess.run(
        [sys.executable, "-m", "demo.free_ports", f"{port}=the demo orders API"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (free.returncode, free.stderr) == (0, "")

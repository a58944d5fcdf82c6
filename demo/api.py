"""Demo orders REST API: serves `<data>/orders/orders.json` the way the orders source expects.

    python -m demo.api --data data/inbox --port 8765 --token demo-token

`GET /orders?updated_since=<ISO 8601>&page=<1-based>&per_page=<1..1000>` with
`Authorization: Bearer <token>` returns `{"data": [...], "next_page": n | null}`,
orders sorted by (updated_at, order_id), `updated_since` inclusive. The file is
re-read when it changes, so tests can add or update orders while it runs.

Fault injection (`--fail-first`, `--fail-after`, `--fail-rate`, `--status`,
`--retry-after`) lets tests prove that the source retries and fails cleanly; it
is deterministic so a failing run can be replayed. `--fault` says what a failing
request gets: an HTTP error `status` (default), a `slow` answer (`--delay`
seconds, for client timeouts), a `truncated` body (cut half-way, Content-Length
of the whole) or an `html` page with status 200. `--paging` breaks the paging
itself: `empty-last-page` (one more page with no data), `loop` (the last page's
next_page points back to page 1). `start_server` / `serve` run the same server in a
thread for tests and the pipeline.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ORDERS_PATH = "/orders"
ORDERS_FILE = Path("orders") / "orders.json"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
FAULT_STATUSES = (429, 500, 502, 503)
FAULT_KINDS = ("status", "slow", "truncated", "html")
PAGING_MODES = ("normal", "empty-last-page", "loop")


@dataclass(frozen=True)
class Faults:
    """Deterministic failures for requests to /orders (counted from 1 per server).

    Request k fails when k <= fail_first, when fail_after is set and k > fail_after
    (an outage in the middle of paging), or when the seeded random draw for k is
    below fail_rate; the same seed replays the same sequence of failures.
    """

    fail_first: int = 0
    fail_after: int | None = None
    fail_rate: float = 0.0
    status: int = 500
    retry_after: int | None = None
    seed: int = 0
    fault: str = "status"  # what a failing request gets (FAULT_KINDS)
    delay: float = 0.0  # seconds, for fault "slow"
    paging: str = "normal"  # PAGING_MODES, for every request

    def __post_init__(self) -> None:
        if self.fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {FAULT_KINDS}, got {self.fault!r}")
        if self.paging not in PAGING_MODES:
            raise ValueError(f"paging must be one of {PAGING_MODES}, got {self.paging!r}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")
        if self.status not in FAULT_STATUSES:
            raise ValueError(f"fault status must be one of {FAULT_STATUSES}, got {self.status}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be between 0 and 1, got {self.fail_rate}")
        if self.fail_first < 0:
            raise ValueError(f"fail_first must be >= 0, got {self.fail_first}")
        if self.fail_after is not None and self.fail_after < 0:
            raise ValueError(f"fail_after must be >= 0, got {self.fail_after}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")


class BadRequest(ValueError):
    """A query parameter the API cannot accept (answered with 400)."""


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 with an explicit zone (`Z` or `+00:00`), as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"updated_since is not an ISO 8601 timestamp: {value!r} "
            "(e.g. 2026-01-05T10:00:00Z; URL-encode '+' as %2B)"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"updated_since needs a time zone (Z or +00:00): {value!r}")
    return parsed.astimezone(UTC)


class OrdersStore:
    """The orders file, sorted once per version of the file and re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._orders: list[dict[str, Any]] = []
        self._keys: list[datetime] = []

    def snapshot(self) -> tuple[list[dict[str, Any]], list[datetime]]:
        """The current orders sorted by (updated_at, order_id), and their updated_at values."""
        stat = self.path.stat()
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if signature != self._signature:
                self._orders, self._keys = self._load()
                self._signature = signature
            return self._orders, self._keys

    def _load(self) -> tuple[list[dict[str, Any]], list[datetime]]:
        orders = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(orders, list):
            raise ValueError(f"{self.path} must hold a JSON array of orders")
        keyed = []
        for order in orders:
            updated_at = datetime.fromisoformat(order["updated_at"]).astimezone(UTC)
            keyed.append((updated_at, order["order_id"], order))
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [item[2] for item in keyed], [item[0] for item in keyed]


class OrdersServer(ThreadingHTTPServer):
    """HTTP server holding the API's state: data, token, faults and a request counter."""

    daemon_threads = True

    def __init__(
        self,
        data_dir: Path,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        log_requests: bool = False,
    ) -> None:
        orders_file = Path(data_dir) / ORDERS_FILE
        if not orders_file.is_file():
            raise FileNotFoundError(
                f"no orders file at {orders_file}: generate it with `python -m demo.generator`"
            )
        if not token:
            raise ValueError("the API needs a non-empty token")
        self.store = OrdersStore(orders_file)
        self.token = token
        self.faults = faults or Faults()
        self.log_requests = log_requests
        self._rng = random.Random(self.faults.seed)
        self._count_lock = threading.Lock()
        self.orders_requests = 0
        self.thread: threading.Thread | None = None
        super().__init__((host, port), OrdersHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def next_fault(self) -> bool:
        """Count one /orders request; True when the fault plan says it must fail."""
        with self._count_lock:
            self.orders_requests += 1
            count, faults = self.orders_requests, self.faults
            draw = self._rng.random()
            return (
                count <= faults.fail_first
                or (faults.fail_after is not None and count > faults.fail_after)
                or draw < faults.fail_rate
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out on a slow answer) is not a server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread."""
        self.shutdown()
        self.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


class OrdersHandler(BaseHTTPRequestHandler):
    # HTTP/1.0 (one request per connection): a stopped server leaves no
    # keep-alive connection behind that would go on answering.
    server: OrdersServer

    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        url = urlsplit(self.path)
        if url.path.rstrip("/") != ORDERS_PATH:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {url.path}"})
            return
        faults = self.server.faults
        fault = self.server.next_fault()
        if fault and faults.fault == "status":
            self._send_fault()
            return
        if fault and faults.fault == "slow":
            time.sleep(faults.delay)
        if not self._authorized():
            self._send_json(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or invalid bearer token"},
                {"WWW-Authenticate": "Bearer"},
            )
            return
        try:
            updated_since, page, per_page = _parse_query(url.query)
        except BadRequest as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        try:
            orders, keys = self.server.store.snapshot()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"cannot read orders: {exc}"}
            )
            return
        start = _first_at_or_after(keys, updated_since) if updated_since else 0
        matching = len(orders) - start
        offset = start + (page - 1) * per_page
        data = orders[offset : offset + per_page] if offset < len(orders) else []
        next_page = page + 1 if page * per_page < matching else None
        if faults.paging == "empty-last-page":  # go on until a page comes back empty
            next_page = page + 1 if (page - 1) * per_page < matching else None
        elif faults.paging == "loop" and next_page is None:
            next_page = 1
        body = {"data": data, "next_page": next_page}
        if fault and faults.fault == "html":
            self._send_html(HTTPStatus.OK, "<html><body><h1>Gateway login</h1></body></html>")
        else:
            self._send_json(HTTPStatus.OK, body, truncate=fault and faults.fault == "truncated")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return hmac.compare_digest(token.strip().encode(), self.server.token.encode())

    def _send_fault(self) -> None:
        status = HTTPStatus(self.server.faults.status)
        headers = {}
        if self.server.faults.retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(self.server.faults.retry_after)
        self._send_json(status, {"error": f"injected fault: {status.phrase}"}, headers)

    def _send_json(
        self,
        status: HTTPStatus,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        """`truncate`: announce the whole body but send half of it, as a dropped link does."""
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if truncate else payload)

    def _send_html(self, status: HTTPStatus, page: str) -> None:
        payload = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The request line never carries the token (it travels in a header).
        if self.server.log_requests:
            super().log_message(format, *args)


def _parse_query(query: str) -> tuple[datetime | None, int, int]:
    params = parse_qs(query, keep_blank_values=True)
    for name, values in params.items():
        if len(values) > 1:
            raise BadRequest(f"{name} given more than once")
    updated_since = None
    if "updated_since" in params:
        updated_since = parse_timestamp(params["updated_since"][0])
    page = _positive_int(params, "page", 1, None)
    per_page = _positive_int(params, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    return updated_since, page, per_page


def _positive_int(
    params: dict[str, list[str]], name: str, default: int, maximum: int | None
) -> int:
    if name not in params:
        return default
    raw = params[name][0]
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < 1 or (maximum is not None and value > maximum):
        limit = f"between 1 and {maximum}" if maximum else ">= 1"
        raise BadRequest(f"{name} must be {limit}, got {value}")
    return value


def _first_at_or_after(keys: list[datetime], since: datetime) -> int:
    """Index of the first order with updated_at >= since (keys are sorted)."""
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < since:
            lo = mid + 1
        else:
            hi = mid
    return lo


def start_server(
    data_dir: str | os.PathLike[str],
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_requests: bool = False,
    **faults: Any,
) -> OrdersServer:
    """Start the API in a daemon thread; `server.url` is the base URL, `server.stop()` ends it.

    `faults` are the `Faults` fields (fail_first, fail_after, fail_rate, status, retry_after,
    seed, fault, delay, paging).
    """
    server = OrdersServer(
        Path(data_dir),
        token,
        host=host,
        port=port,
        faults=Faults(**faults),
        log_requests=log_requests,
    )
    server.thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    server.thread.start()
    return server


@contextmanager
def serve(
    data_dir: str | os.PathLike[str],
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    **faults: Any,
) -> Iterator[str]:
    """Run the API for the duration of a `with` block, yielding its base URL."""
    server = start_server(data_dir, token, host=host, port=port, **faults)
    try:
        yield server.url
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.api", description="Demo orders REST API.")
    parser.add_argument("--data", required=True, help="sample folder holding orders/orders.json")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--token",
        default=os.environ.get("SOURCES__ORDERS__API_TOKEN"),
        help="bearer token clients must send (default: env SOURCES__ORDERS__API_TOKEN)",
    )
    parser.add_argument("--fail-first", type=int, default=0, help="fail the first N requests")
    parser.add_argument(
        "--fail-after", type=int, default=None, help="fail every request after the first N"
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fail this share, seeded")
    parser.add_argument("--seed", type=int, default=0, help="seed for --fail-rate")
    parser.add_argument("--status", type=int, choices=FAULT_STATUSES, default=500)
    parser.add_argument("--retry-after", type=int, default=None, help="seconds, on 429/503")
    parser.add_argument(
        "--fault", choices=FAULT_KINDS, default="status", help="what a failing request gets"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, for --fault slow")
    parser.add_argument("--paging", choices=PAGING_MODES, default="normal")
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token is required (or set SOURCES__ORDERS__API_TOKEN)")

    try:
        server = start_server(
            args.data,
            args.token,
            host=args.host,
            port=args.port,
            log_requests=not args.quiet,
            fail_first=args.fail_first,
            fail_after=args.fail_after,
            fail_rate=args.fail_rate,
            status=args.status,
            retry_after=args.retry_after,
            seed=args.seed,
            fault=args.fault,
            delay=args.delay,
            paging=args.paging,
        )
    except (OSError, ValueError) as exc:
        print(f"error: cannot start the orders API: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"serving on {server.url}", flush=True)
    while not stopping.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

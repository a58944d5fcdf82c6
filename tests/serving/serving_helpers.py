"""Serving test helpers: small published files made directly with DuckDB, and a real server.

`write_analytics` writes what `pipeline publish` writes (marts.user_features
with the columns and types of the real contract in `_ml__models.yml`, plus
meta.publication), beside the target and renamed over it, as publish does.
`start_server` runs `python -m pipeline serve` on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODELS_YML = ROOT / "models" / "marts" / "ml" / "_ml__models.yml"


def contract() -> list[tuple[str, str]]:
    """(name, data_type) of every user_features column, from the dbt contract."""
    doc = yaml.safe_load(MODELS_YML.read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == "user_features")
    return [(c["name"], c["data_type"]) for c in model["columns"]]


def _expression(name: str, data_type: str, salt: int) -> str:
    """A deterministic value per row `i` (with nulls and awkward floats/strings) by type."""
    if name == "user_id":
        return "i * 3 + 1"  # gaps: i * 3 + 2 is always unknown
    kind = data_type.lower()
    if kind == "double":
        return f"case when (i + {salt}) % 7 = 0 then null else ((i * 37 + {salt}) % 1000) / 7.0 end"
    if kind == "bigint":
        return f"case when (i + {salt}) % 11 = 0 then null else (i * 13 + {salt}) % 50 end"
    if kind == "boolean":
        return f"case when (i + {salt}) % 5 = 0 then null else (i + {salt}) % 2 = 0 end"
    if kind == "timestamp":
        return f"timestamp '2026-02-02 00:00:00' + to_hours({salt}) + to_microseconds(i)"
    if kind == "varchar":
        return (
            f"case when (i + {salt}) % 9 = 0 then null "
            f"else 'v' || ((i + {salt}) % 5) || ' é\"''' end"
        )
    raise AssertionError(f"no test values for {name} {data_type}")


def write_analytics(path: Path, run_id: str, users: int, salt: int = 0) -> Path:
    """Publish a file of `users` users (ids 1, 4, 7, ... stored shuffled) as run `run_id`."""
    temp = path.with_name(f".{path.name}.{run_id}.tmp")
    temp.unlink(missing_ok=True)
    columns = contract()
    con = duckdb.connect(str(temp))
    try:
        con.execute("create schema marts")
        con.execute(
            "create table marts.user_features ("
            + ", ".join(f"{name} {data_type}" for name, data_type in columns)
            + ")"
        )
        con.execute(
            "insert into marts.user_features select "
            + ", ".join(_expression(n, t, salt) for n, t in columns)
            + f" from range({users}) as r(i) order by hash(i + {salt})"
        )
        con.execute("create schema meta")
        con.execute(
            """create table meta.publication as select
                ? as run_id, ?::timestamptz as published_at, ? as dbt_invocation_id,
                ?::varchar[] as dlt_load_ids, ? as tables""",
            [
                run_id,
                datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
                "dbt-" + run_id,
                ["load-1"],
                json.dumps({"dim_users": users + 5, "user_features": users}),
            ],
        )
        con.execute("checkpoint")
    finally:
        con.close()
    os.replace(temp, path)
    return path


def direct(path: Path, ids: list[int]) -> list[dict[str, Any] | None]:
    """What DuckDB itself returns for these ids, in order, as JSON would carry it."""
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(
            "select r.pos, f.* from unnest(?) with ordinality as r(id, pos) "
            "left join marts.user_features as f on f.user_id = r.id order by r.pos",
            [ids],
        )
        names = [d[0] for d in cursor.description][1:]
        rows = cursor.fetchall()
    return [
        None if row[1] is None else {n: _jsonable(v) for n, v in zip(names, row[1:], strict=True)}
        for row in rows
    ]


def _jsonable(value: Any) -> Any:
    """A naive (UTC) timestamp as the API writes it: ISO 8601 with `Z`."""
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`python -m pipeline serve` in a child process; its output is read as it comes (a
    full pipe would stall the server), so a test can wait for a line."""

    process: subprocess.Popen[str]
    url: str
    analytics: Path
    token: str | None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=600, **kwargs)

    def wait_for_log(self, text: str, timeout: float = 300) -> None:
        """Until the server has logged `text` (a deadline far beyond the expected time)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"the server did not log {text!r}:\n{''.join(self.lines)}")
            time.sleep(0.02)

    def stop(self) -> str:
        """SIGINT (uvicorn's graceful stop); returns what the server logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=600)
        return "".join(self.lines)


def start_server(analytics: Path, token: str | None = None, poll: float = 0.05) -> Server:
    """`python -m pipeline serve` on a free port; returns once /health answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SERVE_API_TOKEN"}
    if token:
        env["SERVE_API_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--analytics", str(analytics)]
        + ["--port", str(port), "--poll", str(poll)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}", analytics, token)
    deadline = time.monotonic() + 300  # a safety net: it answers in seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{server.stop()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code in (200, 503):
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    log = server.stop()
    raise AssertionError(f"server did not answer on {server.url} within 300 s:\n{log}")

"""A user's project in tmp_path: `python -m pipeline init`'s files (with_dbt) and its own
`.dlt/config.toml`, commands run from its folder the way a user runs them.

Shared by the tests of declared sources (tests/sources/); not a conftest, so test
modules import it by a name no other module uses.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb

from pipeline.init import init


@dataclass
class Project:
    """A folder holding `.dlt/config.toml` (and, with_dbt, the rest of a project `init`
    writes: the dbt project, none of the demo's); its warehouse in data/."""

    root: Path

    @classmethod
    def create(cls, root: Path, config: str, with_dbt: bool = False) -> Project:
        if with_dbt:
            init(root, "own_project")
        (root / ".dlt").mkdir(parents=True, exist_ok=True)
        (root / ".dlt" / "config.toml").write_text(config, encoding="utf-8")
        return cls(root)

    def with_inbox(self, *sources: str) -> Project:
        """The project with an empty inbox/<source> folder for each file source."""
        for source in sources:
            (self.root / "inbox" / source).mkdir(parents=True)
        return self

    @property
    def warehouse(self) -> Path:
        return self.root / "data" / "warehouse.duckdb"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
        return {
            **env,
            "WAREHOUSE_PATH": str(self.warehouse),
            "DBT_PROFILES_DIR": str(self.root / "profiles"),
            "DBT_TARGET_PATH": str(self.root / "target"),
            "DBT_LOG_PATH": str(self.root / "logs"),
            **extra,
        }

    def run(self, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`python -m ...` or `dbt ...` from the project's folder."""
        program = (
            str(Path(sys.executable).with_name("dbt")) if command[0] == "dbt" else sys.executable
        )
        args = command[1:] if command[0] in ("dbt", "python") else command
        return subprocess.run(
            [program, *args],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def query(self, sql: str, path: Path | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path or self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]


def one_error(stderr: str) -> str:
    """The one `error:` line a failed command prints (and no traceback)."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in stderr
    return line


def sqlite(path: Path, *statements: str) -> None:
    """Run statements on a SQLite file (made when missing), committed."""
    with sqlite3.connect(path) as con:
        for statement in statements:
            con.execute(statement)
    con.close()


def summary(stdout: str) -> dict[str, dict[str, str]]:
    """`python -m ingestion`'s summary table, by source."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


@dataclass
class ItemsApi:
    """A JSON API nobody here wrote the client for: `GET /v1/items?since=<epoch>`, paged by
    a full `next` URL, records keyed on `id` with an epoch-seconds `modified` cursor; and
    `GET /v1/tags`, one page of tags."""

    items: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 3
    url: str = ""
    requests: int = 0

    tags: list[dict[str, Any]] = field(default_factory=list)

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        since = int(query.get("since", ["0"])[0])
        offset = int(query.get("offset", ["0"])[0])
        matching = sorted(
            (
                i
                for i in self.items
                if not isinstance(i.get("modified"), int) or i["modified"] >= since
            ),
            key=lambda i: (str(type(i.get("modified"))), i.get("modified") or 0, str(i.get("id"))),
        )
        page = matching[offset : offset + self.page_size]
        more = offset + self.page_size < len(matching)
        next_url = f"{self.url}/v1/items?since={since}&offset={offset + self.page_size}"
        return {"results": page, "links": {"next": next_url if more else None}}


@contextmanager
def serve_items(api: ItemsApi) -> Iterator[ItemsApi]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            api.requests += 1
            parsed = urlparse(self.path)
            if parsed.path == "/v1/tags":  # a second endpoint: one page, no cursor
                body = json.dumps({"results": api.tags}).encode()
            else:
                body = json.dumps(api.page(parse_qs(parsed.query))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()

"""A real redis-server on 127.0.0.1 for the real-time tests, and helpers to drive the consumer.

One server per session (started with no persistence); each test gets its own
stream and warehouse, so tests never see each other's entries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from realtime_helpers import GROUP, ROOT, Stream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis://127.0.0.1:<free port>/0 of a redis-server started for this session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (Debian: apt-get install redis-server; .ci/run does it)"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.02)
    client.close()
    yield url
    process.terminate()
    process.wait(timeout=600)


@pytest.fixture
def stream(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stream]:
    name = f"events-{uuid.uuid4().hex[:8]}"
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        **os.environ,
        "WAREHOUSE_PATH": str(warehouse),
        "SOURCES__EVENTS__BACKEND": "redis",
        "SOURCES__EVENTS__REDIS_URL": redis_url,
        "SOURCES__EVENTS__STREAM": name,
        "SOURCES__EVENTS__GROUP": GROUP,
        "DBT_PROFILES_DIR": str(ROOT / "profiles"),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    monkeypatch.setenv("WAREHOUSE_PATH", str(warehouse))
    client = redis.Redis.from_url(redis_url)
    yield Stream(redis_url, name, warehouse, env, client)
    client.delete(name)
    client.close()

"""Each real-time test's own stream and warehouse on the session's redis-server
(`redis_url`, tests/conftest.py), so tests never see each other's entries."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from realtime_helpers import GROUP, ROOT, Stream


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

"""Reliability helpers: a sample big enough to kill a load half-way, and real processes.

`big_sample` is generated once per session (about 35k user rows, 300k event
lines, 4k orders through the demo API) so `python -m ingestion` runs for
several seconds and a test can signal it while dlt extracts or loads.
`Warehouse` runs the product's commands against its own files; `raw_counts`
and `assert_raw_exact` check the guarantees: counts equal the source, no key
twice, every row's `_dlt_load_id` in `raw._dlt_loads`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from project_env import ROOT, warehouse_env

from demo.generator import generate

TOKEN = "reliability-token-3e8a"
BIG_USERS = 30_000
BIG_ORDERS = 4_000  # orders go through dlt as dicts (~8k rows/s): enough to see paging

# table -> primary key (what "no duplicates" means in raw)
RAW_KEYS = {
    "users": "_row_key",
    "events": "event_id",
    "orders": "order_id",
    "products": "product_id",
}


@dataclass(frozen=True)
class Warehouse:
    """One warehouse folder and the env that points every command at it."""

    root: Path
    env: dict[str, str]

    @property
    def path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dlt_dir(self) -> Path:
        return self.root / ".dlt-pipelines" / "warehouse"

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        process = self.start(*args, env=env)
        out, err = process.communicate(timeout=600)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


def make_warehouse(root: Path, **extra: str) -> Warehouse:
    root.mkdir(parents=True, exist_ok=True)
    env = warehouse_env(root, token=TOKEN, **extra)
    env.pop("ANALYTICS_PATH", None)
    return Warehouse(root, env)


@dataclass(frozen=True)
class BigSample:
    inbox: Path
    expected: dict[str, int]  # raw table -> rows it must hold
    rejected: dict[str, int]  # source -> rows in raw._rejected_rows


def make_big_sample(tmp_path_factory: pytest.TempPathFactory) -> BigSample:
    inbox = tmp_path_factory.mktemp("big") / "inbox"
    manifest = generate(inbox, users=BIG_USERS, seed=11, segment_size=20_000)
    orders_file = inbox / "orders" / "orders.json"
    orders = json.loads(orders_file.read_text())[:BIG_ORDERS]
    orders_file.write_text(json.dumps(orders))
    expected = {
        "users": manifest["users"]["raw_rows"],
        "events": manifest["events"]["distinct_events"],
        "orders": len(orders),
        "products": manifest["products"]["rows"],
    }
    rejected = {
        "users": manifest["users"]["malformed_rows"],
        "events": manifest["events"]["malformed_lines"],
    }
    return BigSample(inbox, expected, rejected)


def raw_counts(warehouse: Warehouse) -> dict[str, tuple[int, int]]:
    """Per raw table: (rows, distinct keys)."""
    return {
        table: warehouse.query(f"select count(*), count(distinct {key}) from raw.{table}")[0]
        for table, key in RAW_KEYS.items()
    }


def assert_raw_exact(warehouse: Warehouse, sample: BigSample) -> None:
    """Counts equal the source, no key twice, no row from a load dlt never finished."""
    assert raw_counts(warehouse) == {t: (n, n) for t, n in sample.expected.items()}
    rejected = dict(warehouse.query("select source, count(*) from raw._rejected_rows group by 1"))
    assert rejected == sample.rejected
    assert warehouse.query(
        "select count(*) - count(distinct (source, location)) from raw._rejected_rows"
    ) == [(0,)]
    for table in (*RAW_KEYS, "_rejected_rows"):
        orphans = warehouse.query(
            f"select count(*) from raw.{table} where _dlt_load_id not in "
            "(select load_id from raw._dlt_loads where status = 0)"
        )
        assert orphans == [(0,)], f"raw.{table} has rows of an unfinished load"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def signal_at(
    process: subprocess.Popen[str], marker: Callable[[], bool], sig: int, what: str
) -> subprocess.CompletedProcess:
    """Send `sig` once `marker()` holds (the process must still be running then)."""
    wait_for(lambda: marker() or process.poll() is not None, 300, what)
    assert process.poll() is None, f"the process ended before {what}"
    process.send_signal(sig)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def kill9_at(process: subprocess.Popen[str], marker: Callable[[], bool], what: str) -> None:
    done = signal_at(process, marker, signal.SIGKILL, what)
    assert done.returncode == -signal.SIGKILL

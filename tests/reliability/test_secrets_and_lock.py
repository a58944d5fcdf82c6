"""The orders API token never leaks; a locked warehouse fails clearly and the next run works."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import ROOT, make_warehouse

from demo.api import serve

pytestmark = pytest.mark.slow

SENTINEL = "SENTINEL-TOKEN-7d41c0ffee"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_token_never_in_output_logs_state_or_tables(sample_warehouse: Any, tmp_path: Path):
    warehouse = make_warehouse(
        tmp_path / "wh",
        SOURCES__ORDERS__API_TOKEN=SENTINEL,
        SOURCES__ORDERS__REQUEST_BACKOFF_FACTOR="0.01",
    )
    inbox = str(sample_warehouse.inbox)
    args = ("-m", "ingestion", "orders", "products", "--inbox", inbox, "--debug")
    bad_url = warehouse.run(*args, "--api-url", f"http://127.0.0.1:{free_port()}")
    with serve(sample_warehouse.inbox, token="another-token") as url:
        refused = warehouse.run(*args, "--api-url", url)
    with serve(sample_warehouse.inbox, token=SENTINEL) as url:
        loaded = warehouse.run(*args, "--api-url", url, "--progress")
    assert bad_url.returncode == 1 and "unreachable after retries" in bad_url.stderr
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    for done in (bad_url, refused, loaded):
        assert SENTINEL not in done.stdout + done.stderr
    # dlt's working folder: state, schemas, load packages; no trace.pickle is written.
    files = [p for p in (tmp_path / "wh").rglob("*") if p.is_file()]
    assert not any(p.name == "trace.pickle" for p in files)
    for path in files:
        if path.suffix != ".duckdb":
            assert SENTINEL.encode() not in path.read_bytes(), path
    # Every table of the warehouse (raw, dlt's bookkeeping, monitoring.audit_log ...), as text.
    tables = warehouse.query(
        "select table_schema, table_name from information_schema.tables order by 1, 2"
    )
    assert ("raw", "_dlt_loads") in tables
    for schema, table in tables:
        rows = warehouse.query(f'select * from "{schema}"."{table}"')
        assert SENTINEL not in json.dumps(rows, default=str), f"{schema}.{table}"


def test_locked_warehouse_fails_clearly_then_the_next_run_succeeds(
    sample_warehouse: Any, tmp_path: Path
) -> None:
    warehouse = make_warehouse(tmp_path / "wh")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "con.execute('create table held (x int)'); print('ready', flush=True); "
            "sys.stdin.readline()",
            str(warehouse.path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    args = ("-m", "ingestion", "products", "--inbox", str(sample_warehouse.inbox))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        locked = warehouse.run(*args)
    finally:
        holder.communicate("release\n", timeout=600)  # the holder closes and exits
    assert locked.returncode == 1
    assert locked.stderr.startswith(f"error: warehouse {warehouse.path} is locked by PID ")
    assert f"PID {holder.pid}" in locked.stderr and "Traceback" not in locked.stderr
    assert warehouse.query("select table_schema, table_name from information_schema.tables") == [
        ("main", "held")
    ]  # nothing half-written
    assert not (tmp_path / "wh" / ".dlt-pipelines").exists()

    done = warehouse.run(*args)
    assert done.returncode == 0, done.stderr
    expected = sample_warehouse.manifest["products"]["rows"]
    assert warehouse.query("select count(*), count(distinct product_id) from raw.products") == [
        (expected, expected)
    ]

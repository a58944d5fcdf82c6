"""`python -m pipeline run` twice on the same inputs changes no mart; a failing test blocks all.

One site (the session's ingested sample, copied) is published once; the same
inputs again must give byte-for-byte the same mart contents, and a failing
upstream dbt test must skip what is downstream, raise a monitor alert and
publish nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from reliability_helpers import TOKEN, Warehouse, make_warehouse

from demo.api import serve

pytestmark = pytest.mark.slow

VARS = '{features_as_of: "2026-02-02T00:00:00Z"}'


def mart_checksums(path: Path) -> dict[str, tuple[int, str]]:
    """Per mart: rows and a digest of its sorted rows (floats to 10 digits)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        ]
        sums = {}
        for name in sorted(names):
            rows = con.execute(f'select * from marts."{name}"').fetchall()
            stable = sorted(
                repr(tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row))
                for row in rows
            )
            sums[name] = (len(rows), hashlib.sha256("\n".join(stable).encode()).hexdigest())
        return sums
    finally:
        con.close()


def pipeline_run(site: Warehouse, inbox: Path, *args: str) -> Any:
    with serve(inbox, token=TOKEN) as url:
        return site.run(
            *("-m", "pipeline", "run", "--inbox", str(inbox), "--api-url", url, "--vars", VARS),
            *args,
        )


def test_same_inputs_twice_then_a_failing_test_publishes_nothing(
    sample_warehouse: Any, tmp_path: Path
) -> None:
    site = make_warehouse(tmp_path / "site")
    shutil.copy2(sample_warehouse.warehouse, site.path)
    shutil.copytree(
        sample_warehouse.warehouse.parent / ".dlt-pipelines", site.root / ".dlt-pipelines"
    )
    analytics = site.root / "analytics.duckdb"

    first = pipeline_run(site, sample_warehouse.inbox)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    published = mart_checksums(analytics)
    assert set(published) >= {"dim_users", "fct_events", "fct_orders", "user_features"}

    second = pipeline_run(site, sample_warehouse.inbox)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert mart_checksums(analytics) == published  # every mart unchanged (PII masked alike)

    # A product without a key upstream: its not_null test (error level) fails.
    con = duckdb.connect(str(site.path))
    con.execute(
        "insert into raw.products select * replace (null as product_id) "
        "from raw.products where product_id = 1"
    )
    con.close()
    before = hashlib.sha256(analytics.read_bytes()).hexdigest()
    failed = pipeline_run(site, sample_warehouse.inbox, "--select", "stg_products__products+")
    assert failed.returncode == 1
    assert re.search(r"^publish\s+skipped\b", failed.stdout, re.M)
    assert hashlib.sha256(analytics.read_bytes()).hexdigest() == before  # nothing published
    results = json.loads((site.root / "target" / "run_results.json").read_text())
    status = {r["unique_id"].split(".")[-1]: r["status"] for r in results["results"]}
    assert status["fct_orders"] == "skipped"  # downstream of the failed test
    assert status["user_features"] == "skipped"

    monitor = site.run("-m", "monitoring", "--target-dir", str(site.root / "target"))
    assert monitor.returncode == 1, monitor.stdout[-3000:] + monitor.stderr[-3000:]
    alerts = site.query(
        "select metric, severity from monitoring.quality_alerts "
        "where metric = 'dbt_test' and severity = 'error'"
    )
    assert alerts, monitor.stdout[-3000:]

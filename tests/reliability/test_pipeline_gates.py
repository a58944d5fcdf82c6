"""`python -m pipeline run` twice on the same inputs changes no mart; a failing test blocks all.

One site (a copy of the session's published sample) is run again on the same
inputs: the published marts must keep byte-for-byte the same contents, and a failing
upstream dbt test must skip what is downstream, raise a monitor alert and
publish nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from project_env import PII_HASH_KEY, SITE_FILES, VARS, copy_state
from reliability_helpers import TOKEN, Warehouse, make_warehouse

from demo.api import serve

pytestmark = pytest.mark.slow


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
    sample_warehouse: Any, published_sample: Path, tmp_path: Path
) -> None:
    site = make_warehouse(tmp_path / "site", PII_HASH_KEY=PII_HASH_KEY)
    copy_state(published_sample, site.root, SITE_FILES)
    analytics = site.root / "analytics.duckdb"
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

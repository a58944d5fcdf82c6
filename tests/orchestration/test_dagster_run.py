"""A Dagster run of every asset is a pipeline run: same marts, same gates, same lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance
from dagster_sites import (
    Site,
    check_results,
    failure_text,
    materialized,
    published_marts,
    sha256,
)

from orchestration.location import JOB
from warehouse.lock import WarehouseLock, holder_info

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

SOURCES = {"users/users", "orders/orders", "events/events", "products/products"}
MARTS = {"dim_users", "fct_events", "fct_orders", "user_features", "category_stats"}


def test_every_asset_publishes_what_the_pipeline_publishes(
    pipeline_site: Site, dagster_site: tuple[Site, Any]
) -> None:
    site, result = dagster_site
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    done = materialized(result)
    assert done >= SOURCES
    assert {f"marts/{m}" for m in MARTS} <= done
    assert {"staging/stg_users__users", "intermediate/int_user_activity"} <= done
    assert "analytics" in done

    checks = check_results(result)
    monitor = {a: e for (a, name), e in checks.items() if name == "quality_monitor"}
    marts = {f"marts/{m}" for m in MARTS}
    assert set(monitor) == marts | SOURCES
    assert all(monitor[m].passed for m in marts)
    # the sources as the report has them: raw.users warns (its duplicate_rate test), the
    # others pass; dbt's tests on raw tables are checks of the source assets
    assert {s: (e.passed, e.severity) for s, e in monitor.items() if s not in marts} == {
        "users/users": (False, AssetCheckSeverity.WARN),
        "orders/orders": (True, AssetCheckSeverity.WARN),
        "events/events": (True, AssetCheckSeverity.WARN),
        "products/products": (True, AssetCheckSeverity.WARN),
    }
    dbt_tests = {(a, name): e for (a, name), e in checks.items() if name != "quality_monitor"}
    assert len(dbt_tests) > 50
    assert {a for a, _ in dbt_tests} >= SOURCES
    assert [(a, e.severity) for (a, _), e in dbt_tests.items() if not e.passed] == [
        ("users/users", AssetCheckSeverity.WARN)  # its duplicate_rate test, a warning
    ]

    ours, theirs = published_marts(site.analytics), published_marts(pipeline_site.analytics)
    assert set(ours) == set(theirs) == MARTS
    assert {t: len(r) for t, r in ours.items()} == {t: len(r) for t, r in theirs.items()}
    assert ours == theirs  # every row, PII masked alike

    # The same raw rows and rejects: the sources were loaded by python -m ingestion.
    for table in ("raw.users", "raw.orders", "raw.events", "raw.products", "raw._rejected_rows"):
        sql = f"select count(*) from {table}"
        assert site.query(sql) == pipeline_site.query(sql), table

    # One ledger row for the Dagster run, and its steps in the audit log.
    runs = site.query(
        "select command, status, published, check_kind, ingest_status, build_status, "
        "monitor_status, publish_status, rows_loaded, run_id from monitoring.pipeline_runs"
    )
    assert len(runs) == 1
    assert runs[0][:8] == ("dagster", "succeeded", True, "full", "ok", "ok", "ok", "ok")
    assert (
        runs[0][8] == pipeline_site.query("select rows_loaded from monitoring.pipeline_runs")[0][0]
    )
    audited = site.query(
        f"select command, count(*) from monitoring.audit_log where run_id = '{runs[0][9]}' "
        "group by 1 order by 1"
    )
    assert dict(audited) == {"build": 1, "dagster": 1, "ingest": 4, "monitor": 1, "publish": 1}


def test_a_failing_error_level_test_blocks_publish(site: Site, orders_api: str) -> None:
    # A product without a key upstream: its not_null test (error level) fails.
    with duckdb.connect(str(site.warehouse)) as con:
        con.execute(
            "insert into raw.products select * replace (null as product_id) "
            "from raw.products where product_id = 1"
        )
    before = sha256(site.analytics)

    result = site.materialize(orders_api)

    assert not result.success
    assert "analytics" not in materialized(result)
    assert sha256(site.analytics) == before
    failed = {
        (asset, name): e.passed
        for (asset, name), e in check_results(result).items()
        if not e.passed and e.severity == AssetCheckSeverity.ERROR
    }
    assert failed == {
        ("staging/stg_products__products", "not_null_stg_products__products_product_id"): False
    }
    steps = {e.step_key: e.event_type_value for e in result.all_events if e.is_step_event}
    assert steps["dbt_models"] == "STEP_FAILURE"
    assert "analytics" not in steps or steps["analytics"] == "STEP_SKIPPED"
    status, published, error, monitor, publish = site.query(
        "select status, published, error, monitor_status, publish_status "
        "from monitoring.pipeline_runs order by started_at desc"
    )[0]
    assert (status, published, monitor, publish) == ("failed", False, "skipped", "skipped")
    assert "dbt build failed" in error and "not_null_stg_products__products_product_id" in error


def test_an_error_alert_fails_its_marts_check_and_blocks_publish(
    site: Site, orders_api: str
) -> None:
    """Monitor errors on some marts: their checks fail, the others pass, nothing is published."""
    with duckdb.connect(str(site.warehouse)) as con:  # a mart lost after its build
        con.execute("drop table marts.category_stats")  # fct_events, a view, reads it
    before = sha256(site.analytics)

    result = monitor_and_publish(site, orders_api)

    assert not result.success
    monitor = {a: e for (a, name), e in check_results(result).items() if name == "quality_monitor"}
    failed = {a for a, e in monitor.items() if not e.passed}
    assert failed == {"marts/category_stats", "marts/fct_events"}
    for mart in failed:
        assert monitor[mart].severity == AssetCheckSeverity.ERROR
        alerts = str(monitor[mart].metadata["alerts"].value)
        assert "could not measure" in alerts and "category_stats does not exist" in alerts
    assert "analytics" not in materialized(result)
    assert sha256(site.analytics) == before
    status, alerts_error, publish = site.query(
        "select status, alerts_error, publish_status "
        "from monitoring.pipeline_runs order by started_at desc"
    )[0]
    assert (status, alerts_error, publish) == ("failed", 2, "skipped")


def test_a_warning_on_a_mart_warns_and_publishes(site: Site, orders_api: str) -> None:
    with duckdb.connect(str(site.warehouse)) as con:  # twice the rows of the last run: a warning
        con.execute("insert into marts.fct_orders select * from marts.fct_orders")

    result = monitor_and_publish(site, orders_api)

    assert result.success
    monitor = {a: e for (a, name), e in check_results(result).items() if name == "quality_monitor"}
    assert {a for a, e in monitor.items() if not e.passed} == {"marts/fct_orders"}
    assert monitor["marts/fct_orders"].severity == AssetCheckSeverity.WARN
    assert "row_count_change" in str(monitor["marts/fct_orders"].metadata["alerts"].value)
    assert "analytics" in materialized(result)


def monitor_and_publish(site: Site, orders_api: str) -> Any:
    """A Dagster run of the marts' monitor checks and `analytics`, without a build."""
    with site.environment():
        job = site.definitions(orders_api).resolve_job_def(JOB)
        checks = {AssetCheckKey(AssetKey(["marts", m]), "quality_monitor") for m in MARTS}
        subset = job.get_subset(
            asset_selection={AssetKey("analytics")}, asset_check_selection=checks
        )
        return subset.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)


def test_a_load_the_cli_fails_fails_its_asset(inbox: Path, orders_api: str, tmp_path: Path) -> None:
    """Above its rejected-rate limit `python -m ingestion users` exits 1: the asset fails."""
    site = Site(tmp_path / "site", inbox)
    strict = {"SOURCES__USERS__MAX_REJECTED_RATE": "0"}  # the sample has 2 bad users rows

    result = site.materialize(orders_api, env=strict, selection={AssetKey(["users", "users"])})

    assert not result.success
    assert materialized(result) == set()
    errors = failure_text(result)
    assert "ingest users: python -m ingestion exited 1" in errors
    assert "above sources.users.max_rejected_rate = 0" in errors
    rejected = site.query("select count(*) from raw._rejected_rows where source = 'users'")
    assert rejected == [(2,)]  # kept, with their reasons, for the user to look at
    assert site.query("select command, status, ingest_status from monitoring.pipeline_runs") == [
        ("dagster", "failed", "failed")
    ]


def test_a_held_lock_fails_the_run_cleanly(site: Site, orders_api: str) -> None:
    before = {p.name: sha256(p) for p in (site.warehouse, site.analytics)}
    runs = site.query("select count(*) from monitoring.pipeline_runs")
    lock = WarehouseLock(site.warehouse)
    lock.acquire(0, holder_info("python -m pipeline run", "build"))
    try:
        result = site.materialize(orders_api)
    finally:
        lock.release()

    assert not result.success
    assert materialized(result) == set()
    errors = failure_text(result)
    assert "holds the warehouse" in errors and "python -m pipeline run, step build" in errors
    assert {p.name: sha256(p) for p in (site.warehouse, site.analytics)} == before
    assert site.query("select count(*) from monitoring.pipeline_runs") == runs


def test_a_pipeline_run_after_a_dagster_run_builds_only_what_is_new(
    site: Site, orders_api: str
) -> None:
    """The Dagster run recorded what its build read: the next pipeline run scopes against it."""
    with duckdb.connect(str(site.warehouse)) as con:  # the daily full check is not due
        con.execute("update monitoring.pipeline_runs set started_at = now()")
    done = site.pipeline_run(orders_api)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "nothing to rebuild (no new rows in raw)" in done.stdout
    runs = site.query(
        "select command, status, check_kind from monitoring.pipeline_runs order by started_at"
    )
    assert runs == [("dagster", "succeeded", "full"), ("run", "succeeded", "none")]

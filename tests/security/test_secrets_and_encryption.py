"""Secrets never leak; the published file and exports can be encrypted; the audit log."""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from project_env import ROOT
from security_site import Secured, sample_email

from pipeline.publish import open_analytics, publish
from privacy import PrivacyError, masking
from warehouse import audit
from warehouse.lock import WarehouseLock

pytestmark = pytest.mark.slow

SENTINEL = "s3ntinel-Zq9x-never-print-me"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sentinel_secret_never_leaks(secured_copy: Secured) -> None:
    """A secret in env, echoed by a failing URL and path, is never shown or stored."""
    site = secured_copy
    env = {
        "PII_HASH_KEY": SENTINEL,
        "MY_SERVICE_PASSWORD": SENTINEL,
        "SOURCES__ORDERS__REQUEST_MAX_ATTEMPTS": "1",  # fail fast on the closed port
    }
    bad_url = f"http://127.0.0.1:{_free_port()}/{SENTINEL}"
    failed = site.run(
        "-m", "pipeline", "run", "--inbox", str(site.inbox), "--api-url", bad_url, env=env
    )
    assert failed.returncode == 1
    assert "orders" in failed.stderr  # the failing source is named
    published = site.run("-m", "pipeline", "publish", env=env)
    assert published.returncode == 0, published.stderr[-2000:]
    bad = site.run("-m", "ingestion", "--inbox", str(site.inbox / "nowhere" / SENTINEL), env=env)
    assert bad.returncode == 1
    for done in (failed, published, bad):
        assert SENTINEL not in done.stdout + done.stderr
    assert "***" in failed.stdout + failed.stderr  # redacted, not silently dropped
    rows = audit.read(site.warehouse)
    assert {r["command"] for r in rows} >= {"run", "ingest", "build", "monitor", "publish"}
    assert SENTINEL not in json.dumps(rows, default=str)
    ledger = site.query(site.warehouse, "select * from monitoring.pipeline_runs")
    assert SENTINEL not in json.dumps(ledger, default=str)
    for log in [*(site.root / "logs").rglob("*"), *(site.root / "target").glob("*.json")]:
        if log.is_file():
            assert SENTINEL.encode() not in log.read_bytes(), log
    for path in (site.warehouse, site.analytics):
        assert SENTINEL.encode() not in path.read_bytes()


def test_audit_rows_and_jsonl_fallback(secured_copy: Secured) -> None:
    site = secured_copy
    rows = audit.read(site.warehouse)
    run = [r for r in rows if r["command"] == "run"][-1]
    same_run = {r["command"] for r in rows if r["run_id"] == run["run_id"]}
    assert same_run == {"run", "ingest", "build", "monitor", "publish"}
    assert {r["os_user"] for r in rows} == {getpass.getuser()}
    assert all(r["outcome"] == "ok" and r["finished_at"] >= r["started_at"] for r in rows)
    # While a pipeline run holds the warehouse, other commands' rows wait in audit.jsonl ...
    lock = WarehouseLock(site.warehouse)
    lock.acquire(0, {"pid": 1})
    try:
        where = audit.record(
            "export", ["--out", "x"], 0, datetime.now(UTC), warehouse=site.warehouse
        )
    finally:
        lock.release()
    assert where == str(site.root / "audit.jsonl")
    # ... and move into the table with the next row written.
    assert audit.record("monitor", [], 1, datetime.now(UTC), warehouse=site.warehouse) == "table"
    after = audit.read(site.warehouse)
    assert [r["command"] for r in after[len(rows) :]] == ["export", "monitor"]
    assert (site.root / "audit.jsonl").read_text() == ""


def test_encrypted_publish_and_export(
    secured_copy: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = secured_copy
    key = "analytics-key-4d1e"
    monkeypatch.setenv("PII_HASH_KEY", "pii-test-key-7f3a9c")
    monkeypatch.setenv("ANALYTICS_ENCRYPTION_KEY", key)
    monkeypatch.delenv("ANALYTICS_ENCRYPTION_ALLOW_MBEDTLS", raising=False)
    # Without OpenSSL (httpfs) DuckDB cannot write encrypted files securely: refuse, say why.
    if not _has_httpfs():
        from pipeline.publish import PublishError

        with pytest.raises(PrivacyError, match="httpfs"):
            try:
                publish(site.warehouse, site.analytics, "enc", None, [], ROOT)
            except PublishError as exc:
                raise PrivacyError(str(exc)) from exc
        monkeypatch.setenv("ANALYTICS_ENCRYPTION_ALLOW_MBEDTLS", "1")
    done = publish(site.warehouse, site.analytics, "enc", None, [], ROOT)
    assert done.encrypted
    data = site.analytics.read_bytes()
    _, email = sample_email(site.warehouse)
    assert email.encode() not in data and b"dim_users" not in data and key.encode() not in data
    with pytest.raises(duckdb.Error, match="without a key"):
        duckdb.connect(str(site.analytics), read_only=True)
    with pytest.raises(duckdb.Error, match="Wrong encryption key"):
        duckdb.connect().execute(f"attach '{site.analytics}' (read_only, encryption_key 'nope')")
    con = open_analytics(site.analytics)
    try:
        users = con.execute("select count(*) from marts.dim_users").fetchone()[0]
    finally:
        con.close()
    assert users == site.query(site.warehouse, "select count(*) from marts.dim_users")[0][0]

    out = tmp_path / "f.parquet"
    env = {
        "ANALYTICS_ENCRYPTION_KEY": key,
        "ANALYTICS_ENCRYPTION_ALLOW_MBEDTLS": "1",
    }
    export = site.run(
        "-m", "pipeline", "features", "--as-of", "2026-02-02T00:00:00Z", "--out", str(out), env=env
    )
    assert export.returncode == 0, export.stderr[-2000:]
    assert json.loads(out.with_name(out.name + ".manifest.json").read_text())["encrypted"] is True
    reader = duckdb.connect()
    with pytest.raises(duckdb.Error, match="encrypted"):
        reader.execute(f"select count(*) from read_parquet('{out}')").fetchall()
    reader.execute(f"pragma add_parquet_key('k', '{masking.parquet_key(key)}')")
    rows = reader.execute(
        f"select count(*) from read_parquet('{out}', encryption_config = {{footer_key: 'k'}})"
    ).fetchone()[0]
    assert rows == users
    assert b"example" not in out.read_bytes()  # email domains are inside the encrypted pages


def _has_httpfs() -> bool:
    try:
        duckdb.connect().execute("load httpfs")
    except duckdb.Error:
        return False
    return True

"""Right to erasure: `pipeline forget` removes users everywhere and ingestion never reloads them."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from security_site import HASH_KEY, Secured, text_values

from privacy import masking, suppression
from warehouse import audit
from warehouse.settings import pipelines_dir

pytestmark = pytest.mark.slow


def test_digest_sql_matches_python() -> None:
    con = duckdb.connect()
    con.execute("set variable suppression_salt = 'salt'")
    for kind, value in [("user_id", " 017 "), ("user_id", "abc"), ("email", " A@B.Com ")]:
        sql = suppression.digest_sql(kind, "$1")
        assert con.execute(f"select {sql}", [value]).fetchone()[0] == suppression.digest(
            kind, value, "salt"
        )


def test_suppression_filters_arrow_dicts_and_payloads() -> None:
    ids = {suppression.digest("user_id", "17", "s"), suppression.digest("email", "x@y.org", "s")}
    s = suppression.Suppression("s", {d for d in ids if d})
    users = pa.table(
        {"user_id": ["17", " 18", None, "19"], "email": [None, "a@b.c", None, "X@y.org"]}
    )
    kept, dropped = s.filter_table(users)
    assert dropped == 2 and kept.column("user_id").to_pylist() == [" 18", None]
    rejected = pa.table(
        {
            "reason": ["a", "b", "c", "d"],
            "payload": [
                "17,Ann,a@b.c",
                '{"event_id": "e", "user_id": 17, "cat',
                "170,Bo",
                "z x@y.org",
            ],
        }
    )
    kept, dropped = s.filter_table(rejected)
    assert dropped == 3 and kept.column("payload").to_pylist() == ["170,Bo"]
    assert [s.keep_row(r) for r in ({"user_id": 17}, {"user_id": 171}, {"order_id": 1})] == [
        False,
        True,
        True,
    ]


def _target(warehouse: Path) -> tuple[int, list[str]]:
    """A user with events, orders, an email and (if the sample has one) a rejected CSV line."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        (user_id,) = con.execute(
            """select u.user_id from marts.dim_users as u
            where u.email is not null
              and exists (select 1 from marts.fct_events as e where e.user_id = u.user_id)
              and exists (select 1 from marts.fct_orders as o where o.user_id = u.user_id)
            order by exists (select 1 from raw._rejected_rows as r
                where r.source = 'users'
                  and regexp_extract(r.payload, '^([0-9]+),', 1) = u.user_id::varchar) desc,
                u.user_id
            limit 1"""
        ).fetchone()
        emails = [
            r[0]
            for r in con.execute(
                "select distinct lower(trim(email)) from raw.users "
                "where trim(user_id) = ? and email like '%@%'",
                [str(user_id)],
            ).fetchall()
        ]
    finally:
        con.close()
    return int(user_id), emails


def _traces(path: Path, user_id: int, emails: list[str], key: str | None = None) -> list[str]:
    """Where the user still is in a DuckDB file: user_id columns and any text holding an email."""
    found = []
    con = duckdb.connect()
    try:
        con.execute(f"attach '{path}' as db (read_only)")
        columns = con.execute(
            "select c.table_schema, c.table_name from information_schema.columns as c "
            "join information_schema.tables as t using (table_catalog, table_schema, table_name) "
            "where c.table_catalog = 'db' and c.column_name = 'user_id' "
            "and t.table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in columns:
            n = con.execute(
                f'select count(*) from db."{schema}"."{table}" '
                "where trim(cast(user_id as varchar)) = ?",
                [str(user_id)],
            ).fetchone()[0]
            if n:
                found.append(f"{schema}.{table}: {n} rows")
    finally:
        con.close()
    for table, column, value in text_values(path):
        low = value.lower()
        if any(e in low for e in emails):
            found.append(f"{table}.{column}")
        if any(masking.hmac_hex(HASH_KEY.encode(), e) == value for e in emails):
            found.append(f"{table}.{column} (hashed)")
    return found


def test_forget_erases_everywhere_and_stays_erased(secured_copy: Secured, tmp_path: Path) -> None:
    site = secured_copy
    user_id, emails = _target(site.warehouse)
    assert emails and _traces(site.warehouse, user_id, emails)  # there before
    rejected_before = site.query(
        site.warehouse,
        f"select count(*) from raw._rejected_rows where payload like '{user_id},%'",
    )[0][0]
    # what a load run with LOAD__DELETE_COMPLETED_JOBS=false leaves in dlt's folder
    kept = pipelines_dir(site.warehouse) / "ml_warehouse_users/load/loaded/1/completed_jobs"
    kept.mkdir(parents=True)
    site.query(
        site.warehouse,
        f"copy (select * from raw.users where trim(cast(user_id as varchar)) = '{user_id}') "
        f"to '{kept / 'users.0.parquet'}' (format parquet)",
    )
    assert duckdb.sql(f"select count(*) from '{kept}/*.parquet'").fetchall()[0][0] >= 1

    done = site.run(
        "-m",
        "pipeline",
        "forget",
        "--user-id",
        str(user_id),
        "--vars",
        '{features_as_of: "2026-02-02T00:00:00Z"}',
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _traces(site.warehouse, user_id, emails) == []
    assert _traces(site.analytics, user_id, emails) == []
    files = list((site.root / ".dlt-pipelines").rglob("completed_jobs/*"))
    assert [f for f in files if f.is_file()] == []

    # A new export has no row for the user.
    out = tmp_path / "f.parquet"
    export = site.run(
        "-m", "pipeline", "features", "--as-of", "2026-02-02T00:00:00Z", "--out", str(out)
    )
    assert export.returncode == 0, export.stderr[-2000:]
    assert duckdb.sql(f"select count(*) from '{out}' where user_id = {user_id}").fetchall() == [
        (0,)
    ]
    assert all(e.encode() not in out.read_bytes() for e in emails)

    # Replaying every source from scratch (same inbox, same API) does not bring them back.
    replay = site.run("-m", "ingestion", "--inbox", str(site.inbox), "--full-refresh", api=True)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    assert "suppressed" in replay.stdout and "rows of erased users" in replay.stdout
    assert _traces(site.warehouse, user_id, emails) == []

    # The audit log records the erasure, without the id in the arguments or any email.
    rows = audit.read(site.warehouse)
    forget = [r for r in rows if r["command"] == "forget"]
    erase = [r for r in rows if r["command"] == "erase"]
    assert len(forget) == 1 and forget[0]["outcome"] == "ok"
    assert forget[0]["arguments"].startswith("--users 1")
    detail = json.loads(erase[0]["detail"])
    assert detail["users"] == 1 and detail["emails"] == len(emails)
    assert detail["rows_deleted"]["raw.users"] >= 1
    assert detail["rows_deleted"].get("raw._rejected_rows", 0) == rejected_before
    assert len(detail["suppression_digests"]) == 1
    dump = json.dumps(rows, default=str).lower()
    assert not [e for e in emails if e in dump]
    ingest = [r for r in rows if r["command"] == "ingest"][-1]
    assert sum(s["suppressed"] for s in json.loads(ingest["detail"]).values()) > 0
    ledger = site.query(
        site.warehouse, "select arguments, detail, error from monitoring.pipeline_runs"
    )
    assert not [e for e in emails if e in json.dumps(ledger, default=str).lower()]


def test_forget_usage_errors(secured_copy: Secured) -> None:
    done = secured_copy.run("-m", "pipeline", "forget", "--user-id", "bob@example.com")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --user-id 'bob@example.com': a user id is an integer"

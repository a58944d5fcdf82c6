"""The run ledger: `monitoring.pipeline_runs`, one row per pipeline run.

The row is written when a run starts (status `running`) and rewritten after
every step, so a run killed mid-way leaves `running` behind. Only the lock
holder writes here, so the next run knows such rows are dead and marks them
`abandoned`. The pipeline process opens the warehouse only between steps (the
steps are other processes and DuckDB takes one writer at a time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

SCHEMA = "monitoring"
TABLE = f"{SCHEMA}.pipeline_runs"
BATCHES = f"{SCHEMA}.pipeline_backfill_batches"
STEPS = ("ingest", "build", "monitor", "publish")

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {TABLE} (
        run_id varchar primary key,
        command varchar not null,
        arguments varchar,
        pid integer,
        started_at timestamptz not null,
        finished_at timestamptz,
        status varchar not null,
        current_step varchar,
        ingest_status varchar,
        ingest_seconds double,
        build_status varchar,
        build_seconds double,
        monitor_status varchar,
        monitor_seconds double,
        publish_status varchar,
        publish_seconds double,
        dlt_load_ids varchar[],
        dbt_invocation_id varchar,
        rows_loaded bigint,
        alerts_error integer,
        alerts_warn integer,
        published boolean not null,
        analytics_path varchar,
        error varchar,
        detail varchar
    )""",
    # which check the run's build did: full, scoped (the new rows) or none (nothing built)
    f"alter table {TABLE} add column if not exists check_kind varchar",
    f"""create table if not exists {BATCHES} (
        backfill_id varchar not null,
        selector varchar not null,
        range_start timestamp not null,
        range_end timestamp not null,
        batch_size varchar not null,
        batch_start timestamp not null,
        batch_end timestamp not null,
        status varchar not null,
        seconds double,
        run_id varchar not null,
        dbt_invocation_id varchar,
        finished_at timestamptz not null
    )""",
]

RUNNING, SUCCEEDED, FAILED, ABANDONED = "running", "succeeded", "failed", "abandoned"


@dataclass
class RunRecord:
    """One ledger row; steps are `ok`, `failed`, `running`, `skipped` or null (not reached)."""

    run_id: str
    command: str
    arguments: str
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    status: str = RUNNING
    current_step: str | None = None
    ingest_status: str | None = None
    ingest_seconds: float | None = None
    build_status: str | None = None
    build_seconds: float | None = None
    monitor_status: str | None = None
    monitor_seconds: float | None = None
    publish_status: str | None = None
    publish_seconds: float | None = None
    dlt_load_ids: list[str] = field(default_factory=list)
    dbt_invocation_id: str | None = None
    rows_loaded: int | None = None
    alerts_error: int | None = None
    alerts_warn: int | None = None
    published: bool = False
    analytics_path: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    check_kind: str | None = None

    def set_step(self, step: str, status: str, seconds: float | None = None) -> None:
        setattr(self, f"{step}_status", status)
        if seconds is not None:
            setattr(self, f"{step}_seconds", round(seconds, 3))


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A write connection with the ledger tables in place."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    con.execute("set TimeZone = 'UTC'")
    for statement in DDL:
        con.execute(statement)
    return con


def save(con: duckdb.DuckDBPyConnection, record: RunRecord) -> None:
    names = [f.name for f in fields(RunRecord)]
    values = [getattr(record, n) for n in names]
    values[names.index("detail")] = json.dumps(record.detail, default=str)
    placeholders = ", ".join("?" for _ in names)
    con.execute(
        f"insert or replace into {TABLE} ({', '.join(names)}) values ({placeholders})", values
    )


def write(warehouse: Path, record: RunRecord) -> None:
    con = connect(warehouse)
    try:
        save(con, record)
    finally:
        con.close()


def abandon_running(con: duckdb.DuckDBPyConnection, now: datetime) -> list[str]:
    """Mark rows left `running` by dead runs; the caller holds the lock, so they are dead."""
    rows = con.execute(f"select run_id from {TABLE} where status = ?", [RUNNING]).fetchall()
    con.execute(
        f"""update {TABLE} set status = ?, finished_at = coalesce(finished_at, ?),
            error = coalesce(error, 'the run died (killed or crashed) during step '
                || coalesce(current_step, '?'))
            where status = ?""",
        [ABANDONED, now, RUNNING],
    )
    return [r[0] for r in rows]


def start(warehouse: Path, record: RunRecord) -> list[str]:
    """Write the `running` row; returns the run ids it marked abandoned."""
    con = connect(warehouse)
    try:
        abandoned = abandon_running(con, datetime.now(UTC))
        save(con, record)
    finally:
        con.close()
    return abandoned


def dlt_load_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Completed dlt loads in the warehouse (status 0), oldest first."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'raw' and table_name = '_dlt_loads'"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    rows = con.execute("select load_id from raw._dlt_loads where status = 0 order by load_id")
    return [r[0] for r in rows.fetchall()]


def last_build(con: duckdb.DuckDBPyConnection, exclude_run: str) -> dict[str, Any] | None:
    """The newest run, other than `exclude_run`, that reached the build step."""
    where = "build_status <> 'skipped' and run_id <> ?"
    rows = last_runs(con, limit=1, where=where, params=[exclude_run])
    if not rows:
        return None
    row = rows[0]
    row["detail"] = json.loads(row["detail"] or "{}")
    return row


def last_full_check(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the newest run whose build passed a full check started."""
    rows = last_runs(con, limit=1, where="check_kind = 'full' and build_status = 'ok'")
    return rows[0]["started_at"] if rows else None


def last_runs(
    con: duckdb.DuckDBPyConnection,
    limit: int,
    where: str = "true",
    params: list[Any] | None = None,
) -> list[dict[str, Any]]:
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = ? and table_name = 'pipeline_runs'",
        [SCHEMA],
    ).fetchone()
    if not exists or not exists[0]:
        return []
    cursor = con.execute(
        f"select * from {TABLE} where {where} order by started_at desc limit ?",
        [*(params or []), limit],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

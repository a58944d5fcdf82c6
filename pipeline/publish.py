"""Write-audit-publish: copy the marts into a new DuckDB file, then rename it into place.

DuckDB allows one writer or many readers per file, never both. Analysts read
`analytics.duckdb`, which no run ever opens: a run writes a new file beside
it, checks it, fsyncs it and `os.replace`s it over the old one. Readers that
have the old file open keep their snapshot (the old inode) and see the new
data when they reconnect; a failed or killed publish leaves the old file
byte-for-byte as it was (at worst a temp file, removed by the next publish).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from .steps import test_pause

SCHEMA = "marts"
META_SCHEMA = "meta"


class PublishError(Exception):
    """The new file could not be written or did not match the warehouse."""


@dataclass
class Published:
    path: Path
    tables: dict[str, int]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def temp_files(analytics: Path) -> list[Path]:
    return sorted(analytics.parent.glob(f".{analytics.name}.*.tmp*"))


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(
    warehouse: Path,
    analytics: Path,
    run_id: str,
    dbt_invocation_id: str | None,
    dlt_load_ids: list[str],
) -> Published:
    """Copy every relation of `marts` into a new file and swap it in atomically."""
    analytics.parent.mkdir(parents=True, exist_ok=True)
    for stale in temp_files(analytics):  # left by a killed publish; we hold the lock
        stale.unlink(missing_ok=True)
    temp = analytics.parent / f".{analytics.name}.{run_id}.tmp"
    try:
        tables = _write(warehouse, temp, run_id, dbt_invocation_id, dlt_load_ids)
        test_pause("publish")
        _fsync(temp)
        os.replace(temp, analytics)
        _fsync(analytics.parent, directory=True)
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return Published(analytics, tables)


def _write(
    warehouse: Path,
    temp: Path,
    run_id: str,
    dbt_invocation_id: str | None,
    dlt_load_ids: list[str],
) -> dict[str, int]:
    con = duckdb.connect(str(temp))
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(f"attach {_literal(str(warehouse.resolve()))} as wh (read_only)")
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'wh' and table_schema = ? order by table_name",
                [SCHEMA],
            ).fetchall()
        ]
        if not names:
            raise PublishError(f"the warehouse {warehouse} has no {SCHEMA} tables: run dbt first")
        con.execute(f"create schema {SCHEMA}")
        counts: dict[str, int] = {}
        for name in names:
            source = f"wh.{SCHEMA}.{_quote(name)}"
            con.execute(f"create table {SCHEMA}.{_quote(name)} as select * from {source}")
            expected = con.execute(f"select count(*) from {source}").fetchone()[0]  # type: ignore[index]
            copied = con.execute(f"select count(*) from {SCHEMA}.{_quote(name)}").fetchone()[0]  # type: ignore[index]
            if copied != expected:
                raise PublishError(
                    f"{SCHEMA}.{name}: copied {copied} rows, warehouse has {expected}"
                )
            counts[name] = int(copied)
        con.execute("detach wh")
        con.execute(f"create schema {META_SCHEMA}")
        con.execute(
            f"""create table {META_SCHEMA}.publication as select
                ? as run_id, ?::timestamptz as published_at, ? as dbt_invocation_id,
                ?::varchar[] as dlt_load_ids, ? as tables""",
            [
                run_id,
                datetime.now(UTC),
                dbt_invocation_id,
                dlt_load_ids,
                json.dumps(counts, sort_keys=True),
            ],
        )
        con.execute("checkpoint")
    finally:
        con.close()
    return counts


def publication(analytics: Path) -> dict[str, object] | None:
    """What the published file says about the run that wrote it (None if not published)."""
    if not analytics.exists():
        return None
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        cursor = con.execute(f"select * from {META_SCHEMA}.publication")
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
    except duckdb.CatalogException:
        return None
    finally:
        con.close()
    return dict(zip(names, row, strict=True)) if row else None

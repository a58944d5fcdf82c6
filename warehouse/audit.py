"""The audit log `monitoring.audit_log`: who ran which command, with what, and how it ended.

Every command that reads or changes the warehouse's data (ingest, build,
monitor, publish, forget, export, and the pipeline's run/backfill around them)
calls `record()` once, when it ends. Arguments are passed through `redact()`,
the one function that strips secrets from anything we print or store.

DuckDB takes one writer at a time, so the row is written at the end of the
command, when the command holds no connection. A command inside a pipeline run
(env `PIPELINE_RUN_ID`, set by the run for its children) writes directly: the
run's process is not using the warehouse while its child runs. Any other
command takes the pipeline's shared lock for the moment of the write (a run
tolerates that, see warehouse/lock.py); when a run holds the warehouse, or
DuckDB reports it locked, the row goes to `<warehouse dir>/audit.jsonl`
instead, and the next direct write moves those rows into the table. Nothing is
lost and no run is ever made to wait for the audit log.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import socket
import sys
import tomllib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb

from .lock import SharedLock
from .settings import warehouse_file_problem, warehouse_path

SCHEMA = "monitoring"
TABLE = f"{SCHEMA}.audit_log"
FALLBACK_NAME = "audit.jsonl"
RUN_ID_ENV = "PIPELINE_RUN_ID"

COLUMNS = (
    "audit_id",
    "started_at",
    "finished_at",
    "seconds",
    "os_user",
    "host",
    "pid",
    "command",
    "arguments",
    "outcome",
    "exit_code",
    "run_id",
    "detail",
)

DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {TABLE} (
        audit_id varchar primary key,
        started_at timestamptz not null,
        finished_at timestamptz not null,
        seconds double,
        os_user varchar not null,
        host varchar,
        pid integer,
        command varchar not null,
        arguments varchar,
        outcome varchar not null,
        exit_code integer,
        run_id varchar,
        detail varchar
    )""",
]

# Env names whose values are secrets: redacted wherever they would be printed or stored.
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|APIKEY|(^|_)KEY($|_)", re.IGNORECASE
)
# A source's option (SOURCES__<NAME>__<OPTION>) is a secret by its option's name, where
# a bare KEY is the source's key column (SOURCES__READINGS__KEY=source), no secret.
SECRET_OPTION = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY", re.IGNORECASE
)
URL_PASSWORD = re.compile(r"://[^/\s:@]*:([^@\s/]+)@")
MIN_SECRET = 4  # shorter values would redact ordinary words

OUTCOMES = {0: "ok", 1: "failed", 2: "usage_error", 130: "interrupted"}


@lru_cache(maxsize=8)
def _toml_secrets(path: str, mtime_ns: int) -> tuple[str, ...]:
    """Every string value in a dlt secrets file (cached per file version)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ()
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.append(node)

    walk(data)
    return tuple(found)


def secret_values() -> list[str]:
    """The secrets this process knows: env values by name, URL passwords, .dlt/secrets.toml."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if not value:
            continue
        if name.upper().startswith("SOURCES__"):
            if SECRET_OPTION.search(name.upper().rsplit("__", 1)[-1]):
                values.add(value)
        elif SECRET_NAME.search(name):
            values.add(value)
        for match in URL_PASSWORD.finditer(value):
            values.add(match.group(1))
    secrets_file = Path(".dlt") / "secrets.toml"
    with contextlib.suppress(OSError):
        stat = secrets_file.stat()
        values.update(_toml_secrets(str(secrets_file.resolve()), stat.st_mtime_ns))
    # Longest first, so a secret that contains another is replaced whole.
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def redact(text: str) -> str:
    """Remove secret values (env, .dlt/secrets.toml, and the password of any URL, in the
    environment or in `text` itself) from anything we print or store."""
    found = {m.group(1) for m in URL_PASSWORD.finditer(text)}
    values = {*secret_values(), *(v for v in found if v)}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


def fallback_path(warehouse: Path) -> Path:
    return warehouse.parent / FALLBACK_NAME


def make_entry(
    command: str,
    arguments: Sequence[str] | str,
    exit_code: int,
    started_at: datetime,
    detail: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """One audit row; arguments and detail are redacted here, whoever calls."""
    finished = datetime.now(UTC)
    args_text = arguments if isinstance(arguments, str) else " ".join(arguments)
    return {
        "audit_id": str(uuid.uuid4()),
        "started_at": started_at.astimezone(UTC).isoformat(),
        "finished_at": finished.isoformat(),
        "seconds": round((finished - started_at).total_seconds(), 3),
        "os_user": os_user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "arguments": redact(args_text),
        "outcome": OUTCOMES.get(exit_code, "failed"),
        "exit_code": exit_code,
        "run_id": run_id or os.environ.get(RUN_ID_ENV) or None,
        "detail": redact(json.dumps(detail or {}, sort_keys=True, default=str)),
    }


def record(
    command: str,
    arguments: Sequence[str] | str,
    exit_code: int,
    started_at: datetime,
    detail: dict[str, Any] | None = None,
    run_id: str | None = None,
    warehouse: Path | None = None,
    holds_lock: bool = False,
) -> str:
    """Write one audit row; returns where it went ("table" or the JSONL path). Never raises.

    `holds_lock`: the caller holds the pipeline's exclusive lock (a pipeline run
    recording its own steps), so it may write the warehouse directly.
    """
    try:
        entry = make_entry(command, arguments, exit_code, started_at, detail, run_id)
        return write(entry, warehouse or warehouse_path(), holds_lock)
    except Exception as exc:  # noqa: BLE001 - the audit must never turn a success into a crash
        print(f"warning: audit log not written: {type(exc).__name__}", file=sys.stderr)
        return "nowhere"


def write(entry: dict[str, Any], warehouse: Path, holds_lock: bool = False) -> str:
    """Into the table when that is safe now, else into the JSONL fallback; nowhere when
    the path is no warehouse (the command said so; nothing is written beside it)."""
    if warehouse_file_problem(warehouse):
        return "nowhere"
    if warehouse.exists():
        shared = None
        inside_run = holds_lock or bool(os.environ.get(RUN_ID_ENV))
        if not inside_run:
            shared = SharedLock(warehouse)
            if not shared.try_acquire():
                shared = None
                return _append_fallback(entry, warehouse)
        try:
            _insert(warehouse, [entry])
            return "table"
        except duckdb.Error:
            return _append_fallback(entry, warehouse)
        finally:
            if shared is not None:
                shared.release()
    return _append_fallback(entry, warehouse)


def _connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(warehouse))
    con.execute("set TimeZone = 'UTC'")
    for statement in DDL:
        con.execute(statement)
    return con


def _insert(warehouse: Path, entries: list[dict[str, Any]]) -> None:
    """Insert the entries and any rows waiting in the fallback file, in one transaction."""
    path = fallback_path(warehouse)
    con = _connect(warehouse)
    try:
        with _locked(path) as pending_file:
            pending = _read_pending(pending_file)
            rows = [[e.get(c) for c in COLUMNS] for e in pending + entries]
            placeholders = ", ".join("?" for _ in COLUMNS)
            con.execute("begin")
            con.executemany(
                f"insert or ignore into {TABLE} ({', '.join(COLUMNS)}) values ({placeholders})",
                rows,
            )
            con.execute("commit")
            if pending and pending_file is not None:
                pending_file.truncate(0)
    finally:
        con.close()


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """The fallback file opened and flock'ed (None when it does not exist)."""
    if not path.exists():
        yield None
        return
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def _read_pending(handle: Any) -> list[dict[str, Any]]:
    if handle is None:
        return []
    handle.seek(0)
    rows = []
    for line in handle:
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def _append_fallback(entry: dict[str, Any], warehouse: Path) -> str:
    """Keep the row in the JSONL file the next direct write moves into the table (silently:
    a busy warehouse is normal, and the command's own output is what the user reads)."""
    path = fallback_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    return str(path)


def read(warehouse: Path) -> list[dict[str, Any]]:
    """The table's rows, oldest first (tests, `pipeline status`)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = 'audit_log'",
            [SCHEMA],
        ).fetchone()
        if not exists or not exists[0]:
            return []
        cursor = con.execute(f"select * from {TABLE} order by started_at, finished_at")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()

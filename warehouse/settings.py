"""Where the warehouse and its neighbours live, and where raw goes.

Every command (ingestion, dbt's profile, monitor, pipeline, serving) reads the
same `WAREHOUSE_PATH`, so one variable moves the whole project to another file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
RAW_DATASET = "raw"
# Set by the pipeline for a scoped check: the dbt tests read the rows loaded after
# this UTC time (the dbt package's macros/scoped_checks.sql), and the monitor's report says so.
CHECK_SINCE_ENV = "WAREHOUSE_CHECK_SINCE"
# Set by `python -m pipeline run` for its ingestion child: the write end of a pipe, to
# which ingestion writes one byte as soon as it knows it loads something; the run's dbt
# child (pipeline/dbt_ahead.py) then imports dbt while the load goes on.
LOADING_FD_ENV = "WAREHOUSE_LOADING_FD"


def warehouse_path() -> Path:
    """The working warehouse file (`WAREHOUSE_PATH`, default data/warehouse.duckdb)."""
    return Path(os.environ.get("WAREHOUSE_PATH", DEFAULT_WAREHOUSE))


def memory_limit() -> str:
    """DuckDB's memory limit for the warehouse's queries (`WAREHOUSE_MEMORY_LIMIT`); beyond it
    DuckDB spills to disk. dbt's profile reads the same variable, with the same default."""
    return os.environ.get("WAREHOUSE_MEMORY_LIMIT", "1GB")


def analytics_path(warehouse: Path) -> Path:
    """The published file: `ANALYTICS_PATH`, default analytics.duckdb beside the warehouse."""
    configured = os.environ.get("ANALYTICS_PATH")
    return Path(configured) if configured else warehouse.parent / "analytics.duckdb"


def warehouse_file_problem(path: Path) -> str | None:
    """Why `path` cannot be a warehouse file, in one line (None when it can).

    Checked before anything opens it: DuckDB would try to download an extension
    for a SQLite file, and folders would be made beside a file that is no folder.
    """
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"warehouse {path}: {parent} is a file, not a folder (set WAREHOUSE_PATH)"
    if path.is_dir():
        return f"warehouse {path} is a folder, not a DuckDB file (set WAREHOUSE_PATH)"
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as f:
            head = f.read(16)
        if head[8:12] != b"DUCK":
            kind = "a SQLite database" if head.startswith(b"SQLite format 3") else "another kind"
            return f"warehouse {path} is not a DuckDB file ({kind}); set WAREHOUSE_PATH"
    return None


def locked_warehouse_message(error_text: str) -> str | None:
    """One line naming the process DuckDB says holds the warehouse, if that is the error."""
    match = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", error_text)
    if not match:
        return None
    return (
        f"warehouse {warehouse_path()} is locked by PID {match.group(2)} ({match.group(1)}); "
        "close that process or wait for it, then re-run"
    )


def pipelines_dir(warehouse: Path | None = None) -> Path:
    """dlt's working folder for one warehouse, kept beside it.

    Pipeline state and pending load packages belong to the warehouse they load
    into; keeping them next to it (not in ~/.dlt) means two warehouses never
    share state.
    """
    warehouse = warehouse or warehouse_path()
    return warehouse.parent / ".dlt-pipelines" / warehouse.stem


# --- scale-out destinations (docs/scale-out.md) --------------------------------------------

DESTINATIONS = ("duckdb", "postgres", "filesystem")
DEFAULT_LAKE = "data/lake"


def warehouse_destination() -> str:
    """Where raw goes: `WAREHOUSE_DESTINATION` = duckdb (default), postgres, or
    filesystem (a Parquet lake that Spark reads); the sources never change."""
    kind = os.environ.get("WAREHOUSE_DESTINATION", "duckdb").strip().lower() or "duckdb"
    if kind not in DESTINATIONS:
        raise ValueError(f"WAREHOUSE_DESTINATION={kind!r} is not one of {', '.join(DESTINATIONS)}")
    return kind


def lake_path() -> Path:
    """The Parquet lake (`WAREHOUSE_LAKE`, default data/lake); raw is `<lake>/raw/<table>/`."""
    return Path(os.environ.get("WAREHOUSE_LAKE", DEFAULT_LAKE))


def postgres_url() -> str:
    """The server from libpq's PG* variables, the same ones dbt's postgres target reads."""
    from urllib.parse import quote

    user = quote(os.environ.get("PGUSER", "postgres"), safe="")
    password = os.environ.get("PGPASSWORD", "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    return f"postgresql://{auth}@{host}:{port}/{os.environ.get('PGDATABASE', 'warehouse')}"

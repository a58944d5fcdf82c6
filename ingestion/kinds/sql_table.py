"""The `sql_table` kind: tables of any SQLAlchemy database, each into its own raw table.

Each table is read incrementally on its cursor column and merged on its key, so
re-running loads only rows changed since the last run and never duplicates one.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

import dlt
from dlt.sources.sql_database import sql_table
from sqlalchemy.exc import NoSuchTableError

from .common import SourceConfigError, make_source, option, source_timezone
from .sql_reader import RunRecorder, adapt_type, check_credentials, missing_table_error

# Dicts through the sqlalchemy backend work on every dialect and get dlt's
# `_dlt_load_id`/`_dlt_id` like the other raw tables.
BACKEND = "sqlalchemy"
CHUNK_SIZE = 50_000


def sql_table_source(
    name: str,
    credentials: str,
    tables: list[Any],
    schema_contract: str = "evolve",
) -> Any:
    """The `tables` of the database at `credentials` as the dlt source `name`.

    Each entry of `tables` is a table with `table`, `primary_key`, `cursor`
    (optional: without it every run reads the whole table and merges it) and
    `raw_table` (default: `table`). `credentials` may hold a password: set it
    in env or `.dlt/secrets.toml`, never in config.toml.
    """
    url = check_credentials(name, credentials)
    if not tables:
        raise SourceConfigError(f"{option(name, 'tables')}: list at least one table")
    resources = []
    for entry in tables:
        if not isinstance(entry, dict) or "table" not in entry or "primary_key" not in entry:
            raise SourceConfigError(
                f"{option(name, 'tables')}: each entry needs table and primary_key, got {entry!r}"
            )
        recorder = RunRecorder(zoneinfo.ZoneInfo(source_timezone(name)))
        cursor = entry.get("cursor")
        try:
            resource = sql_table(
                credentials=url,
                table=entry["table"],
                backend=BACKEND,
                chunk_size=CHUNK_SIZE,
                reflection_level="full",
                type_adapter_callback=adapt_type,
                incremental=dlt.sources.incremental(cursor) if cursor else None,
                write_disposition="merge",
                primary_key=entry["primary_key"],
                table_loader_class=recorder.loader_class(),
            )
        except NoSuchTableError:
            raise missing_table_error(name, entry["table"]) from None
        raw_table = entry.get("raw_table", entry["table"])
        resource.add_step(recorder.step())
        resource.apply_hints(table_name=raw_table)
        resources.append(resource.with_name(raw_table))
    return make_source(name, schema_contract, *resources)

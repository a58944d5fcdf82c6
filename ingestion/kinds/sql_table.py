"""The `sql_table` kind: tables of any SQLAlchemy database, each into its own raw table.

Each table is read incrementally on its cursor column and merged on its key, so
re-running loads only rows changed since the last run and never duplicates one.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any

import dlt
from dlt.sources.sql_database import sql_table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError

from .common import (
    Flag,
    RawTable,
    SourceConfigError,
    check_keys,
    check_stored_name,
    declared_key,
    make_source,
    option,
    raw_column_name,
    source_timezone,
    stored_name,
)
from .sql_reader import (
    RunRecorder,
    adapt_type,
    check_credentials,
    colliding_columns,
    missing_table_error,
    rejected_table,
)

# Dicts through the sqlalchemy backend work on every dialect and get dlt's
# `_dlt_load_id`/`_dlt_id` like the other raw tables.
BACKEND = "sqlalchemy"
CHUNK_SIZE = 50_000
TABLE_OPTIONS = ("table", "primary_key", "cursor", "raw_table")

# Options that hold a secret: read from env or .dlt/secrets.toml, refused in config.toml.
SECRET_OPTIONS: tuple[str, ...] = ("credentials",)


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
    resources = []
    for entry, raw in zip(tables, raw_tables(name, {"tables": tables}), strict=True):
        recorder = RunRecorder(raw.name, zoneinfo.ZoneInfo(source_timezone(name)))
        cursor = entry.get("cursor")
        collision = colliding_columns(url, entry["table"])
        if collision:  # two columns would load as one: the table is rejected whole
            resources.append(rejected_table(name, entry["table"], raw.name, collision))
            continue
        try:
            resource = sql_table(
                credentials=url,
                table=entry["table"],
                backend=BACKEND,
                chunk_size=CHUNK_SIZE,
                reflection_level="full",
                type_adapter_callback=adapt_type,
                incremental=dlt.sources.incremental(cursor, on_cursor_value_missing="include")
                if cursor
                else None,
                write_disposition="merge",
                primary_key=list(entry["primary_key"])
                if isinstance(entry["primary_key"], list)
                else entry["primary_key"],
                table_loader_class=recorder.loader_class(),
            )
        except NoSuchTableError:
            raise missing_table_error(name, entry["table"]) from None
        resource.add_step(recorder.step())
        resource.apply_hints(table_name=raw.name)
        resources.append(resource.with_name(raw.name))
    return make_source(name, schema_contract, *resources)


def with_flags(
    name: str, options: dict[str, Any], inbox: Flag | None, api_url: str | None
) -> dict[str, Any]:
    """`--inbox ROOT`: a SQLite database file is ROOT/<name>/<its file name>."""
    credentials = options.get("credentials") or ""
    if inbox is None or not credentials.startswith("sqlite:///"):
        return options
    file_name = Path(credentials.removeprefix("sqlite:///")).name
    return {**options, "credentials": f"sqlite:///{inbox.root / name / file_name}"}


def probe(name: str, options: dict[str, Any], inbox: Flag | None) -> dict[str, Any] | None:
    """Where new rows would show, for a run that asks before starting dlt
    (ingestion/unchanged.py): each table's cursor. None (always run) when a table has no
    cursor (it is read whole) or the URL holds a password (the record keeps the URL)."""
    url = options.get("credentials") or ""
    tables = options.get("tables") or []
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return None
    if password or not tables or not all(entry.get("cursor") for entry in tables):
        return None
    return {"url": url, "tables": [[entry["table"], entry["cursor"]] for entry in tables]}


def raw_tables(name: str, options: dict[str, Any]) -> list[RawTable]:
    """A raw table per entry of `tables`: `raw_table`, default the source table's stored
    name (`Order Details` -> `order_details`), merged on its `primary_key`."""
    tables = options.get("tables")
    if not tables or not isinstance(tables, list):
        raise SourceConfigError(f"{option(name, 'tables')}: list at least one table")
    raws = []
    for entry in tables:
        if not isinstance(entry, dict) or "table" not in entry:
            raise SourceConfigError(
                f"{option(name, 'tables')}: each entry needs table and primary_key, got {entry!r}"
            )
        where = f"tables[{entry['table']}]"
        check_keys(name, where, entry, TABLE_OPTIONS)
        key = declared_key(name, f"{where}.primary_key", entry.get("primary_key"), True, True)
        raw = entry.get("raw_table") or stored_name(str(entry["table"]))
        check_stored_name(f"sources.{name}.{where}.raw_table", raw)
        raws.append(RawTable(raw, tuple(raw_column_name(k) for k in key), versioned=False))
    return raws

"""Which file sources have nothing new, answered from the warehouse before dlt is imported.

After a file source loaded, the run records in `raw._source_inputs` what it
read: a digest of everything that decides that (the source's declaration in
.dlt/config.toml and secrets.toml, every `SOURCES__*` variable, --inbox, the working
directory, the tool's code), the folder it read, a
digest of that folder's listing (name, size and mtime of every file) taken
before the load started, the raw tables it writes, and the folder's files that
match no pattern (the summary lists them at every run). The next run skips the
source when all of it is as recorded and the tables are there: no dlt
pipeline starts for it. Anything else runs the source as always, and dlt and
the kind decide what is new (a touched file with the same bytes loads nothing
and is recorded again).

The record of a source is deleted before it runs and written after it loaded
(the listing from before the load), so an interrupted or failed run leaves
none, and a file that arrived during the load is read by the next run. Only
the DuckDB warehouse keeps records; a stream, an API or a database is always
asked (their new data is not in a folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from warehouse.settings import RAW_DATASET, warehouse_destination
from warehouse.sources import config_file

TABLE = f"{RAW_DATASET}._source_inputs"
DDL = f"""create table if not exists {TABLE} (
    source varchar primary key,
    inputs varchar not null,
    folder varchar not null,
    listing varchar not null,
    tables varchar[] not null,
    ignored varchar[] not null,
    recorded_at timestamptz not null default current_timestamp
)"""
TOOL_CODE = Path(__file__).resolve().parent  # the ingestion package: its kinds read the files


def _files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.is_file())


def inputs_digest(name: str, declaration: dict[str, Any], inbox: str | None) -> str:
    """A digest of what decides how source `name` reads its folder (see the module's doc).

    Whole config and secrets files, and every `SOURCES__*` variable: a change
    to another source's options costs one ordinary run, never a wrong skip.
    """
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
        digest.update(b"\0")

    add(name, declaration, os.getcwd(), inbox and str(Path(inbox).resolve()))
    settings = config_file()
    homes = [Path(os.environ.get("DLT_DATA_DIR") or Path.home() / ".dlt")]
    for path in (settings, settings.with_name("secrets.toml"), *(h / "config.toml" for h in homes)):
        add(str(path), path.read_bytes() if path.is_file() else None)
    add(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("SOURCES__")))
    for path in _files(TOOL_CODE):
        stat = path.stat()
        add(str(path), stat.st_size, stat.st_mtime_ns)
    return digest.hexdigest()


def listing_digest(folder: Path) -> str | None:
    """Name, size and modification time of every file in `folder` (None when it is missing)."""
    if not folder.is_dir():
        return None
    entries = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        stat = path.stat()
        entries.append((path.name, path.is_file(), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def nothing_new(
    warehouse: Path,
    declared: dict[str, dict[str, Any]],
    names: Sequence[str],
    inbox: str | None,
) -> dict[str, list[str]]:
    """The sources of `names` whose record says they have nothing new (see the module's doc),
    each with the folder's files its last load ignored (the listing is the same).

    Any doubt (another destination, no record, the warehouse busy) answers
    "run it": a wrong skip would leave new data unloaded.
    """
    if warehouse_destination() != "duckdb" or not warehouse.is_file():
        return {}
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            query = f"select source, inputs, folder, listing, tables, ignored from {TABLE}"
            rows = con.execute(query)
            records = {row[0]: row[1:] for row in rows.fetchall()}
            present = {
                table
                for (table,) in con.execute(
                    "select table_name from information_schema.tables where table_schema = ?",
                    [RAW_DATASET],
                ).fetchall()
            }
    except duckdb.Error:  # no record table yet, or another process writes the file
        return {}
    skipped = {}
    for name in names:
        if name not in records or name not in declared:
            continue
        inputs, folder, listing, tables, ignored = records[name]
        if (
            set(tables) <= present
            and inputs == inputs_digest(name, declared[name], inbox)
            and listing == listing_digest(Path(folder))
        ):
            skipped[name] = list(ignored)
    return skipped


def forget(con: Any, names: Sequence[str]) -> None:
    """Delete the records of the sources about to run (a DuckDB connection holding the lock)."""
    con.execute(DDL)
    if names:
        con.execute(f"delete from {TABLE} where source in (select unnest(?))", [list(names)])


def record(
    client: Any,
    name: str,
    inputs: str,
    folder: Path,
    listing: str,
    tables: list[str],
    ignored: list[str],
) -> None:
    """Write the record of a source that loaded (through dlt's client on the warehouse)."""
    client.execute_sql(DDL)
    client.execute_sql(
        f"insert or replace into {TABLE} (source, inputs, folder, listing, tables, ignored) "
        "values (%s, %s, %s, %s, %s, %s)",
        name,
        inputs,
        str(folder.resolve()),
        listing,
        tables,
        ignored,
    )

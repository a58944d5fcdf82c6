"""Which sources have nothing new, answered from the warehouse before dlt is imported.

After a source loaded, the run records in `raw._source_inputs` what it read: a
digest of everything that decides that (the source's declaration in
.dlt/config.toml and secrets.toml, every `SOURCES__*` variable, --inbox, the
working directory, the tool's code), where its new data would show (`probe`)
and a digest of what was there before the load started (`state`), the raw
tables it writes, and the folder's files that match no pattern (the summary
lists them at every run). What is probed, by kind:
- a folder (csv, jsonl from files): the name, size and mtime of every file;
- a `sql_table` source whose every table has a cursor, at a URL without a
  password: per table, the newest cursor value, the rows holding it and the
  rows without one (there must be none: those are read at every run);
- a Redis stream (at a URL without a password): whether its consumer group has
  been given every entry and acknowledged them all, taken after the load;
- a `rest_api` source with `ask_every`: only the time; its configuration decides
  that a run sooner than `ask_every` after its last load does not ask (reported
  `not due`);
- a `rest_api` source without: each endpoint is asked once, from the cursor its
  last load saved, without dlt; nothing is new when the answer holds only records
  that load read (ingestion/api_probe.py says which APIs can be asked so).
The next run skips the source when all of it is as recorded and the tables
are there: no dlt pipeline starts for it. Anything else runs the source as
always, and dlt and the kind decide what is new (a touched file with the same
bytes loads nothing and is recorded again).

The record of a source is deleted before it runs and written after it loaded
(the listing from before the load), so an interrupted or failed run leaves
none, and a file that arrived during the load is read by the next run. Only
the DuckDB warehouse keeps records; an API that cannot be probed, a table without
a cursor and a database or stream behind a password are always run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from warehouse.settings import RAW_DATASET, warehouse_destination
from warehouse.sources import config_file

TABLE = f"{RAW_DATASET}._source_inputs"
DDL = f"""create table if not exists {TABLE} (
    source varchar primary key,
    inputs varchar not null,
    probe varchar not null,
    state varchar not null,
    tables varchar[] not null,
    ignored varchar[] not null,
    recorded_at timestamptz not null default current_timestamp
)"""
TOOL_CODE = Path(__file__).resolve().parent  # the ingestion package: its kinds read the files
ASKED = "asked"  # the state of an API with ask_every: its record's time is what counts
KNOWN = "known"  # the state of a probed API: it holds only records its last load read


def _files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.is_file())


class Quiet(NamedTuple):
    """A source not run: the folder's files its last load ignored; for an API not due
    (`ask_every`), why, in words."""

    ignored: list[str]
    not_due: str | None = None


def not_due(probe: dict[str, Any], recorded_at: datetime) -> str:
    """Why an API with `ask_every` is not asked, for the summary."""
    ago = max(int((datetime.now(UTC) - recorded_at).total_seconds()), 0)
    return f"its last load ended {ago} s ago; it is asked every {probe['every']:g} s (ask_every)"


def inputs_digest(
    name: str, declaration: dict[str, Any], inbox: str | None, api_url: str | None = None
) -> str:
    """A digest of what decides how source `name` reads its folder (see the module's doc).

    Whole config and secrets files, and every `SOURCES__*` variable: a change
    to another source's options costs one ordinary run, never a wrong skip.
    """
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
        digest.update(b"\0")

    add(name, declaration, os.getcwd(), inbox and str(Path(inbox).resolve()))
    if declaration.get("kind") == "rest_api":  # --api-url: its base URL
        add(api_url)
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


def probed_state(probe: dict[str, Any], recorded_at: datetime | None = None) -> str | None:
    """A digest of what `probe` (recorded by the load path) shows now; None when it cannot
    say (a missing folder, an unreachable database, rows without a cursor), an API's
    `ask_every` has passed since its record or a probed API holds a record its last load
    did not read (`recorded_at`: the record's time; before a load: None)."""
    if "every" in probe:
        if recorded_at is None:
            return ASKED
        age = (datetime.now(UTC) - recorded_at).total_seconds()
        return ASKED if 0 <= age < probe["every"] else None
    if "api" in probe:  # before a load: the state to record (api_probe.py)
        if recorded_at is None:
            return KNOWN
        from ingestion import api_probe  # imports requests, not dlt

        return KNOWN if api_probe.answer(probe["api"]) else None
    if "folder" in probe:
        return listing_digest(Path(probe["folder"]))
    if "redis" in probe:  # taken after the load (`after_load`): the group has taken all
        return drained_group(**probe["redis"])
    if "url" in probe:
        try:
            counts = cursor_counts(probe["url"], probe["tables"])
        except Exception:  # noqa: BLE001 - any failure: the source runs and says what it is
            return None
        if any(without for _, _, without in counts):
            return None
        return hashlib.sha256(json.dumps(counts, default=str).encode()).hexdigest()
    return None


def after_load(probe: dict[str, Any]) -> bool:
    """Whether the state is taken once the load is done, not before it: a stream's group
    has nothing left then (a folder's listing from before the load is what was read)."""
    return "redis" in probe


def drained_group(url: str, stream: str, group: str) -> str | None:
    """ "drained" when the consumer group has been given every entry of the stream and
    acknowledged them all (Redis 7's lag and the pending count both 0); else None."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            groups = client.xinfo_groups(stream)
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no extra, stream or group, unreachable: it runs
        return None
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag, pending = info.get("lag"), info.get("pending")
            return "drained" if lag == 0 and pending == 0 else None
    return None


def cursor_counts(url: str, tables: list[list[str]]) -> list[tuple[Any, int, int]]:
    """Per [table, cursor]: (its newest cursor value, the rows holding it, the rows without
    one). A SQLite file is read with the standard library, opened read-only."""
    queries = []
    for table, cursor in tables:
        t, c = (f'"{name.replace(chr(34), chr(34) * 2)}"' for name in (table, cursor))
        queries.append(
            f"select m, (select count(*) from {t} where {c} = m),"
            f" (select count(*) from {t} where {c} is null) from (select max({c}) as m from {t})"
        )
    if url.startswith("sqlite:///"):
        import sqlite3

        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise FileNotFoundError(path)
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as con:
            return [tuple(con.execute(query).fetchone()) for query in queries]
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(con.exec_driver_sql(query).fetchone()) for query in queries]
    finally:
        engine.dispose()


class Answer(NamedTuple):
    """What the records say of the sources a run names (`nothing_new`)."""

    quiet: dict[str, Quiet]  # not to run: nothing new, or an API not due
    changed: list[str]  # recorded, but the record no longer holds: new data, most likely
    # A named source's record has the digest of now: the declarations, `SOURCES__*`
    # variables and the tool's code are those of a load that passed the check of
    # every declaration (the CLI's), so that check would pass again.
    declarations_checked: bool = False


def nothing_new(
    warehouse: Path,
    declared: dict[str, dict[str, Any]],
    names: Sequence[str],
    inbox: str | None,
    api_url: str | None = None,
) -> Answer:
    """The sources of `names` whose record says they have nothing new or are not due (see
    the module's doc); those with a record that no longer holds (new files, rows or
    entries, most likely; an API's `ask_every` passed); and whether the declarations are
    as a record saw them.

    Any doubt (another destination, no record, the warehouse busy) answers
    "run it": a wrong skip would leave new data unloaded.
    """
    if warehouse_destination() != "duckdb" or not warehouse.is_file():
        return Answer({}, [])
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            query = (
                f"select source, inputs, probe, state, tables, ignored, recorded_at from {TABLE}"
            )
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
        return Answer({}, [])
    quiet, changed, checked = {}, [], False
    for name in names:
        if name not in records or name not in declared:
            continue
        inputs, probe, state, tables, ignored, recorded_at = records[name]
        probed = json.loads(probe)
        as_recorded = inputs == inputs_digest(name, declared[name], inbox, api_url)
        checked = checked or as_recorded
        if as_recorded and set(tables) <= present and state == probed_state(probed, recorded_at):
            quiet[name] = Quiet(
                list(ignored), not_due(probed, recorded_at) if "every" in probed else None
            )
        elif "every" not in probed:  # an API due may well have nothing new
            changed.append(name)
    return Answer(quiet, changed, checked)


def forget(con: Any, names: Sequence[str]) -> None:
    """Delete the records of the sources about to run (a DuckDB connection holding the lock)."""
    con.execute(DDL)
    if names:
        con.execute(f"delete from {TABLE} where source in (select unnest(?))", [list(names)])


def record(
    client: Any,
    name: str,
    inputs: str,
    probe: dict[str, Any],
    state: str,
    tables: list[str],
    ignored: list[str],
) -> None:
    """Write the record of a source that loaded (through dlt's client on the warehouse)."""
    client.execute_sql(DDL)
    client.execute_sql(
        f"insert or replace into {TABLE} (source, inputs, probe, state, tables, ignored) "
        "values (%s, %s, %s, %s, %s, %s)",
        name,
        inputs,
        json.dumps(probe),
        state,
        tables,
        ignored,
    )

"""What every kind of source shares: config errors, schema contracts, run counters."""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import json
import queue
import threading
import zoneinfo
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import dlt
import duckdb
import pyarrow as pa
from dlt.common.normalizers.naming.snake_case import NamingConvention

_NAMING = NamingConvention()  # dlt's default: what raw's column names are

LOADED_AT_COLUMN = "_loaded_at"
# A digest of a merged row's content (rest_api, sql_table): a row read again unchanged is
# not loaded again and is counted as unchanged (UnchangedRows).
DIGEST_COLUMN = "_row_digest"
STATE_LAST_RUN = "last_run"

# `schema_contract` setting -> dlt schema contract. "freeze" still lets a raw table be
# created on the first load; after that a new column or a type change fails the load.
SCHEMA_CONTRACTS: dict[str, Any] = {
    "evolve": "evolve",
    "freeze": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
}


T = TypeVar("T")


class SourceConfigError(ValueError):
    """A source option that cannot work: the message names `sources.<name>.<option>`."""


@dataclass(frozen=True)
class Flag:
    """`--inbox ROOT`: the root folder of the file sources, and how to name it in errors."""

    root: Path
    text: str

    def folder(self, source: str) -> tuple[str, str]:
        """A file source's folder ROOT/<source>, and the setting an error names."""
        return str(self.root / source), f"{self.text} (folder {source}/ of it)"


def file_flags(
    name: str, options: dict[str, Any], inbox: Flag | None, api_url: str | None
) -> dict[str, Any]:
    """`with_flags` of a kind that reads a folder: with `--inbox ROOT`, ROOT/<name>."""
    if inbox is None:
        return options
    folder, setting = inbox.folder(name)
    return {**options, "folder": folder, "folder_setting": setting}


def tables_present(client: Any) -> set[str]:
    """The tables the destination's raw dataset holds now (a dlt sql client)."""
    rows = client.execute_sql(
        "select table_name from information_schema.tables where table_schema = %s",
        client.dataset_name,
    )
    return {row[0] for row in rows or []}


@dataclass(frozen=True)
class RawTable:
    """A raw table a declared source writes: what the scaffold, the monitor and the
    declaration checks need to know of it.

    `key` is the declared key, one column or several (a composite key); empty for a
    source without a natural key, whose rows are identified by their lineage.
    `versioned`: raw keeps every reading (csv: each line of each file), so the
    staging model picks the latest per key; the other kinds merge on the key.
    `time`: a jsonl source's `cursor_field`, the records' own time.
    """

    name: str
    key: tuple[str, ...]
    versioned: bool
    time: str | None = None
    lineage: tuple[str, ...] = ()  # the columns that identify a row without a key


def declared_key(
    source: str, option_name: str, value: Any, required: bool = False, as_sent: bool = False
) -> tuple[str, ...]:
    """A key option as a tuple of raw column names: one name, or a list of them (a
    composite key); None for a source without a natural key (unless `required`).
    `as_sent`: the names are the source's fields as sent (an API's), not raw names."""
    if value is None or value == [] or value == "":
        if required:
            raise SourceConfigError(
                f"{option(source, option_name)} is required: one column, or a list of columns"
            )
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SourceConfigError(
            f"{option(source, option_name)} must be a column name or a list of column names, "
            f"got {value!r}"
        )
    if len(set(names)) != len(names):
        raise SourceConfigError(f"{option(source, option_name)} names a column twice: {value!r}")
    if as_sent:
        return tuple(names)
    for name in names:
        if name.startswith("_"):
            raise SourceConfigError(
                f"{option(source, option_name)}: {name!r} is a lineage column, not a key; "
                "a source without a natural key leaves the key unset (its rows are "
                "identified by their lineage)"
            )
    check_raw_names(source, option_name, names)
    return tuple(names)


def check_formats(source: str, formats: Any) -> None:
    """`formats`: {raw column: strptime format} of dates and times the scaffold would not
    recognise (`{ day = "%d-%b-%y" }`)."""
    if formats is None:
        return
    if not isinstance(formats, dict) or not all(
        isinstance(f, str) and "%" in f for f in formats.values()
    ):
        raise SourceConfigError(
            f"{option(source, 'formats')} maps columns to strptime formats, "
            f'e.g. {{ day = "%d-%b-%y" }}; got {formats!r}'
        )
    check_raw_names(source, "formats", formats)


def check_keys(source: str, where: str, entry: dict[str, Any], allowed: Iterable[str]) -> None:
    """A nested table of options (a table entry, a resource, an endpoint) holds only the
    options it knows: a misspelled one fails, named, instead of being ignored."""
    allowed = tuple(allowed)
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise SourceConfigError(
            f"sources.{source}.{where}.{unknown[0]} is not an option there; "
            f"its options: {', '.join(allowed)}"
        )


def option(source: str, name: str) -> str:
    """How a user finds an option: its config key and its env var (a top-level one)."""
    if "[" in name or "." in name:  # inside a table entry or a resource: config only
        return f"sources.{source}.{name}"
    return f"sources.{source}.{name} (env SOURCES__{source.upper()}__{name.upper()})"


def folder_files(folder: Path, glob: str, setting: str) -> tuple[list[Path], list[str]]:
    """The files matching `glob`, plain or gzip-compressed (`glob` + ".gz"), in name order
    (the order they were written), and the names of the folder's other files.

    Names match case-insensitively (`USERS.CSV`, `users.csv.GZ`). The other
    files are listed in the run's summary, so that none is skipped without a
    word. A missing folder is a configuration error, not an empty source: the
    message names `setting`, where the folder came from (the option or --inbox).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder} (set by {setting})")
    patterns = (glob.lower(), glob.lower() + ".gz")
    matched, ignored = [], []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.is_file():
            name = path.name.lower()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                matched.append(path)
            else:
                ignored.append(path.name)
    return matched, ignored


def is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def open_bytes(path: Path) -> BinaryIO:
    """A file's bytes, decompressed when it is a .gz file."""
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")


def stored_name(name: str) -> str:
    """The name a declared source, raw table or column is stored under: dlt's snake_case
    (`My Things` -> `my_things`, `userId` -> `user_id`). The one normalization: every path
    (loads, deletes, checks, the scaffold, the monitor) uses the stored name."""
    return _NAMING.normalize_identifier(name)


def check_stored_name(what: str, name: Any, fix: str = "set it to {!r}") -> str:
    """A declared source or raw table name must be its stored name: one that is not would
    be loaded under one name and looked for under another. `fix` says what to write
    instead, the stored name in its `{}`."""
    if not isinstance(name, str) or not name:
        raise SourceConfigError(f"{what} must be a name, got {name!r}")
    stored = stored_name(name)
    if stored != name or name.startswith("_"):
        raise SourceConfigError(
            f"{what} {name!r} is not a stored name (lower case, digits and single "
            f"underscores, starting with a letter): {fix.format(stored.lstrip('_') or 'x')}"
        )
    return name


def raw_column_name(name: str) -> str:
    """The raw column a header or field `name` loads as: dlt's snake_case, outside the
    namespace of our lineage and dlt's columns (a leading "_"), so `_line` loads as
    `col_line` and no source can overwrite `_line` or `_loaded_at`."""
    normalized = _NAMING.normalize_identifier(name) or "col"
    return f"col{normalized}" if normalized.startswith("_") else normalized


def colliding_field(record: dict[str, Any]) -> str | None:
    """The raw column two of a record's fields would both load into (`userId` and
    `user_id`, `Name` and `name`; nested objects flatten to `parent__child`), else None."""
    seen: set[str] = set()
    for name in _flat_names(record, ""):
        if name in seen:
            return name
        seen.add(name)
    return None


def _flat_names(record: dict[str, Any], prefix: str) -> Iterator[str]:
    for field, value in record.items():
        name = f"{prefix}__{stored_name(field)}" if prefix else raw_column_name(field)
        if isinstance(value, dict) and value:
            yield from _flat_names(value, name)
        else:
            yield name


def check_raw_names(source: str, option_name: str, names: Iterable[str]) -> None:
    """Declared column names (a key, expected columns or fields) must be raw names: the
    models and the merge refer to the raw column."""
    for name in names:
        if raw_column_name(name) != name:
            raise SourceConfigError(
                f"{option(source, option_name)}: {name!r} loads as {raw_column_name(name)!r}; "
                "declare that name (use `rename` for a CSV header)"
            )


def source_timezone(name: str) -> str:
    """The IANA time zone of the source's times sent without an offset (default UTC).

    Raw keeps a text time as sent; the staging model reads one without an offset
    as a wall time in this zone (the scaffold writes it there), never in the
    process's. Typed times without a zone (a database's DATETIME, an API field
    declared `timestamp`) are placed in it at ingestion.
    """
    value = dlt.config.get(f"sources.{name}.timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(str(value))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise SourceConfigError(
            f"sources.{name}.timezone is {value!r}: not an IANA time zone (e.g. UTC, Europe/Berlin)"
        ) from None
    return str(value)


def contract_for(source: str, setting: str) -> Any:
    """The dlt schema contract for a source's `schema_contract` setting."""
    try:
        return SCHEMA_CONTRACTS[setting]
    except KeyError:
        choices = ", ".join(f'"{k}"' for k in SCHEMA_CONTRACTS)
        raise SourceConfigError(
            f"sources.{source}.schema_contract is {setting!r}; expected one of {choices}"
        ) from None


def start_run(state: MutableMapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Fresh per-run counters in a resource's state: the CLI summary reads them."""
    run: dict[str, Any] = {"rows_read": 0, "rows_rejected": 0, "rows_collapsed": 0, **extra}
    state[STATE_LAST_RUN] = run
    return run


def make_source(name: str, schema_contract: str, *resources: Any) -> Any:
    """A dlt source named after the declared source (its schema and its state key), under
    the contract its `schema_contract` setting names."""

    @dlt.source(name=name, section=name, schema_contract=contract_for(name, schema_contract))
    def declared() -> Any:
        return list(resources)

    return declared()


def current_pipeline() -> dlt.Pipeline | None:
    """The pipeline running this source, if any (a bare iteration has none)."""
    try:
        return dlt.current.pipeline()
    except Exception:  # noqa: BLE001 - no active pipeline is a normal case
        return None


def raw_to_check() -> dlt.Pipeline | None:
    """The running pipeline, to ask what raw holds of the source; None on a full refresh.

    A full refresh drops the source's raw tables when it loads: what they hold
    now is neither a repeat to leave out nor an earlier reading to delete.
    """
    pipeline = current_pipeline()
    return None if pipeline is None or pipeline.refresh else pipeline


class UnchangedRows:
    """Leaves out the rows raw already holds as they are, for the kinds that re-read and
    merge (an API or a table without a cursor, rows whose cursor is NULL, the cursor's
    boundary): each row gets `_row_digest`, a digest of its content, and a row whose
    digest raw has is counted in `rows_unchanged` instead of being loaded again.

    Asked of the warehouse through the running pipeline (DuckDB); on PostgreSQL and the
    lake every row loads and the merge keeps one per key.
    """

    def __init__(self, table: str) -> None:
        self.table = table

    def __call__(self, rows: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
        for row in rows:
            content = {k: v for k, v in row.items() if k != LOADED_AT_COLUMN}
            row[DIGEST_COLUMN] = _digest(content)
        known = self._known([row[DIGEST_COLUMN] for row in rows])
        fresh = [row for row in rows if row[DIGEST_COLUMN] not in known]
        run["rows_unchanged"] = run.get("rows_unchanged", 0) + len(rows) - len(fresh)
        return fresh

    def _known(self, digests: list[str]) -> set[str]:
        pipeline = raw_to_check()
        if pipeline is None or not digests or pipeline.destination.destination_name != "duckdb":
            return set()
        with pipeline.sql_client() as client:
            con = client.native_connection
            if not isinstance(con, duckdb.DuckDBPyConnection):
                return set()
            table = client.make_qualified_table_name(self.table)
            con.register("incoming_digests", pa.table({"d": pa.array(digests, pa.string())}))
            try:
                found = con.execute(
                    f"select {DIGEST_COLUMN} from {table}"
                    f" where {DIGEST_COLUMN} in (select d from incoming_digests)"
                ).fetchall()
            except (duckdb.CatalogException, duckdb.BinderException):
                return set()  # the first load, or a table from before digests
            finally:
                con.unregister("incoming_digests")
        return {d for (d,) in found}


def _digest(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """`items` in order, each computed in a thread while the caller works on the one
    before: the next batch is parsed while dlt writes this one to Parquet (DuckDB and
    pyarrow release the GIL). One item at most waits, so memory grows by one batch.

    An error in `items` is raised here at its place in the order. Closing this
    generator (dlt does on a failure) stops the thread after the item it is
    computing, and closes `items` there.
    """
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def compute_ahead() -> None:
        try:
            for item in items:
                handoff.put((True, item))
                if stop.is_set():
                    return
            handoff.put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            handoff.put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=compute_ahead, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = handoff.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        # Every put of the thread is followed by a look at `stop` or its end, so after
        # one item is taken away the put it may be waiting in is the last it makes.
        stop.set()
        with contextlib.suppress(queue.Empty):
            handoff.get_nowait()
        worker.join()

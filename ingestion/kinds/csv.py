"""The `csv` kind: a folder of CSV files -> one raw table, every row keyed by its file and line.

A file is loaded once, and read again only when its bytes changed: grown,
shrunk, rewritten, or completed after it was copied in half-written. Then raw
and the rejected rows hold its new reading only: the old reading's rows and
rejects are deleted (one transaction) just before the new one is loaded in the
same run, so no stale row or reject outlives it (a run stopped in between is
completed by the next). Raw keeps every version of a key its files sent; the
staging model picks the latest per declared key.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt

from ingestion.rejected import REJECTED_TABLE, data_rows, rejected_rows

from .common import (
    Flag,
    RawTable,
    check_formats,
    check_stored_name,
    current_pipeline,
    declared_key,
    file_flags,
    folder_files,
    make_source,
    option,
    raw_to_check,
    start_run,
    tables_present,
)
from .csv_reader import (
    FILE_COLUMN,
    LINE_COLUMN,
    ROW_KEY_COLUMN,
    SPILL_PREFIX,
    CsvFormat,
    UnreadableFileError,
    read_csv_file,
)

log = logging.getLogger(__name__)

# Rows per yielded Arrow table: large enough for dlt's Arrow path, small enough for memory.
CHUNK_ROWS = 100_000
STATE_FILES = "files"
# A digest of the format options the files were read with: when the declaration changes
# (a key fixed after it rejected every file, a delimiter, a rename), every file is read
# again under the new one and its earlier reading and rejects are replaced.
STATE_FORMAT = "format"
# Every file read is new to raw, or its old reading was just deleted (forget_files):
# appending loads exactly what a merge on `_row_key` would, without dlt's merge
# (staging copy, delete, insert), which doubled the load time (1M rows: 3.1 s vs 6 s).
DISPOSITION = "append"

# Options that hold a secret: read from env or .dlt/secrets.toml, refused in config.toml.
SECRET_OPTIONS: tuple[str, ...] = ()


def csv_source(
    name: str,
    folder: str,
    glob: str = "*.csv",
    delimiter: str = ",",
    quote: str = '"',
    encoding: str = "utf-8",
    header: bool = True,
    columns: list[str] | None = None,
    rename: dict[str, str] | None = None,
    key: str | list[str] | None = None,
    table: str | None = None,
    null_values: list[str] | None = None,
    formats: dict[str, str] | None = None,
    schema_contract: str = "evolve",
    folder_setting: str | None = None,
) -> Any:
    """The files `folder/glob` as the dlt source `name`, loading raw.`table` (default `name`).

    Every value is text as sent; `columns` are the expected ones (missing ones stay
    empty, others are reported as new); `rename` maps a file's header to raw's
    names; a file whose header lacks `key` is rejected whole (`wrong_header`);
    `null_values` are the texts that mean null (`NA`, `NULL`): raw holds null for them.
    `formats` ({column: strptime format}) tells the scaffold how a date or time is
    written when it is none of the forms it recognises; raw keeps the text.
    Bad settings fail here, before the pipeline starts, with the option named.
    """
    fmt = CsvFormat(
        name,
        delimiter,
        quote,
        encoding,
        header,
        tuple(columns or ()),
        tuple((rename or {}).items()),
        declared_key(name, "key", key),
        tuple(null_values or ()),
    )
    check_formats(name, formats)
    setting = folder_setting or option(name, "folder")
    folder_files(Path(folder), glob, setting)
    (raw,) = raw_tables(name, {"table": table, "key": key})
    table_name = raw.name

    @dlt.resource(name=table_name)
    def rows() -> Iterator[Any]:
        yield from read_files(name, table_name, *folder_files(Path(folder), glob, setting), fmt)

    return make_source(name, schema_contract, rows())


with_flags = file_flags  # `--inbox ROOT`: the files are in ROOT/<name>


def watched(name: str, options: dict[str, Any], inbox: Flag | None) -> tuple[str, str] | None:
    """The folder and glob a file sensor watches for this source."""
    options = file_flags(name, options, inbox, None)
    return (options["folder"], options["glob"]) if options.get("folder") else None


def probe(name: str, options: dict[str, Any], inbox: Flag | None) -> dict[str, Any] | None:
    """Where new data would show, for a run that asks before starting dlt
    (ingestion/unchanged.py): the folder."""
    folder = watched(name, options, inbox)
    return {"folder": str(Path(folder[0]).resolve())} if folder else None


def raw_tables(name: str, options: dict[str, Any]) -> list[RawTable]:
    """One raw table, `table` (default the source's name), keeping every line of every
    file: the staging model picks the latest per key; without a key every row is current
    (a rewritten file's old reading is deleted when it is read again)."""
    table = check_stored_name(f"sources.{name}.table", options.get("table") or name)
    key = declared_key(name, "key", options.get("key"))
    return [RawTable(table, key, versioned=True, lineage=(FILE_COLUMN, LINE_COLUMN))]


def read_files(
    source: str, table_name: str, files: list[Path], ignored: list[str], fmt: CsvFormat
) -> Iterator[Any]:
    """Each new or changed file once, as Arrow chunks; unparsable rows to _rejected_rows.

    A file is skipped when it is the one recorded when it was loaded (same size
    and mtime, or same bytes); a changed file is read again and replaces its old
    reading (forget_files). `ignored`: the folder's files that match no pattern.
    """
    state = dlt.current.resource_state()
    declared = format_digest(fmt)
    if state.get(STATE_FORMAT, declared) != declared:  # read under another declaration
        state[STATE_FILES] = {}  # every file is read again, replacing its old reading
    state[STATE_FORMAT] = declared
    loaded: dict[str, dict[str, Any]] = state.setdefault(STATE_FILES, {})
    run = start_run(state, files_read=[], files_rejected=[], files_ignored=ignored)
    loaded_at = datetime.now(UTC)

    pending = []
    for path in files:
        recorded = loaded.get(path.name)
        if already_loaded(path, recorded):  # remember a new mtime: next time, no digest
            loaded[path.name] = {**recorded, "mtime_ns": path.stat().st_mtime_ns}
        else:
            pending.append(path)
    pipeline = current_pipeline()
    forget_files(raw_to_check(), source, table_name, [path.name for path in pending])
    spill_dir = pipeline.working_dir if pipeline is not None else None
    if spill_dir is not None:  # a killed run's spill folders, if any
        for spill in Path(spill_dir).glob(f"{SPILL_PREFIX}*"):
            shutil.rmtree(spill, ignore_errors=True)
    # Each file's digest is computed in a thread while the file is read and loaded
    # (hashlib and file reads release the GIL): 0.9 s at 10M rows on its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-digest") as digests:
        for path in pending:
            signature = digests.submit(file_signature, path)
            try:
                csv_file = read_csv_file(path, fmt, spill_dir)
            except UnreadableFileError as error:
                log.info("%s: rejected the whole file: %s", source, error)  # the summary lists it
                reject = {"location": path.name, "reason": error.reason, "payload": str(error)}
                yield rejected_rows(source, table_name, [reject])
                run["rows_read"] += 1
                run["rows_rejected"] += 1
                run["files_rejected"].append(f"{path.name} ({error.reason})")
            except OSError:
                signature.result()  # the file cannot be read: raises file_signature's error
                raise
            else:
                try:
                    for chunk in csv_file.batches(loaded_at, CHUNK_ROWS):
                        yield data_rows(
                            chunk,
                            table_name=table_name,
                            write_disposition=DISPOSITION,
                            primary_key=ROW_KEY_COLUMN,
                        )
                    if csv_file.rejects:
                        yield rejected_rows(source, table_name, csv_file.rejects)
                finally:
                    csv_file.close()
                run["rows_read"] += csv_file.rows_read
                run["rows_rejected"] += len(csv_file.rejects)
            run["files_read"].append(path.name)
            loaded[path.name] = signature.result()


def format_digest(fmt: CsvFormat) -> str:
    return hashlib.sha256(repr(fmt).encode()).hexdigest()[:16]


def file_signature(path: Path) -> dict[str, Any]:
    """Size, modification time and content digest of a file, as recorded when loaded.

    A file the operating system cannot read fails the run instead of being
    rejected: nothing of it is recorded, so the next run reads it once it can.
    """
    try:
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_digest(path)}
    except OSError as error:
        raise OSError(
            f"cannot read {path}: {error.strerror or error}; nothing of this run "
            "was loaded: fix or remove the file, then run again"
        ) from error


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def already_loaded(path: Path, recorded: dict[str, Any] | None) -> bool:
    """Whether this file is the one loaded before, by content, not just by its stat.

    Same size and mtime: skipped without reading it. A copied or touched file
    (new mtime, same bytes) is recognised by its digest, so its rejected rows
    are not appended to raw._rejected_rows a second time.
    """
    if recorded is None:
        return False
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) == (recorded.get("size"), recorded.get("mtime_ns")):
        return True
    return stat.st_size == recorded.get("size") and file_digest(path) == recorded.get("sha256")


def forget_files(
    pipeline: dlt.Pipeline | None, source: str, table_name: str, names: list[str]
) -> None:
    """Delete what raw and the rejected rows hold of these files (an earlier reading), in
    one transaction, before their new reading loads.

    Asked of the warehouse, not of state: state can be lost or reset, the rows
    cannot. A bare iteration (no pipeline) and the Parquet lake, which has no
    deletes, keep what they hold.
    """
    if not names or pipeline is None or pipeline.destination.destination_name == "filesystem":
        return
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return
        present = tables_present(client)
        placeholders = ", ".join(["%s"] * len(names))
        with client.begin_transaction():
            if table_name in present:
                table = client.make_qualified_table_name(table_name)
                client.execute_sql(
                    f"delete from {table} where {FILE_COLUMN} in ({placeholders})", *names
                )
            if REJECTED_TABLE in present:  # a whole-file reject is located at the file's name
                rejected = client.make_qualified_table_name(REJECTED_TABLE)
                for name in names:
                    client.execute_sql(
                        f"delete from {rejected} where source = %s and (location = %s"
                        " or substr(location, 1, %s) = %s)",
                        source,
                        name,
                        len(name) + 1,
                        f"{name}:",
                    )

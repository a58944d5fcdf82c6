"""The `csv` kind: a folder of CSV files -> one raw table, every row keyed by its file and line.

Each file is a snapshot or a file that only grows: a file is loaded once, and
read again only when its bytes changed; the merge on `_row_key`
(`<file>:<line>`) makes that idempotent, so a grown file adds its new lines
and a rewritten one replaces its rows. Raw keeps every version a file sent;
the staging model picks the latest per declared key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt

from ingestion.rejected import rejected_rows

from .common import contract_for, current_pipeline, make_source, option, start_run
from .csv_reader import (
    LINEAGE_COLUMNS,
    CsvFormat,
    UnreadableFileError,
    already_loaded,
    csv_item,
    file_signature,
    files_in_raw,
    list_folder,
    read_csv_file,
    remove_spill_folders,
    unreadable_file_reject,
    write_disposition_for,
)

log = logging.getLogger(__name__)

# Rows per yielded Arrow table: large enough for dlt's Arrow path, small enough for memory.
CHUNK_ROWS = 100_000
STATE_FILES = "files"


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
    key: str | None = None,
    table: str | None = None,
    schema_contract: str = "evolve",
    folder_setting: str | None = None,
) -> Any:
    """The files `folder/glob` as the dlt source `name`, loading raw.`table` (default `name`).

    Every value is text as sent; `columns` are the expected ones (missing ones stay
    empty, others are reported as new); `rename` maps a file's header to raw's
    names; a file whose header lacks `key` is rejected whole (`wrong_header`).
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
        key,
    )
    contract = contract_for(name, schema_contract)
    setting = folder_setting or option(name, "folder")
    list_folder(Path(folder), glob, setting)
    table_name = table or name
    hints = {
        **{column: {"data_type": "text", "nullable": True} for column in fmt.columns},
        **LINEAGE_COLUMNS,
    }

    @dlt.resource(name=table_name)
    def rows() -> Iterator[Any]:
        yield from read_files(name, table_name, Path(folder), glob, setting, fmt, hints)

    return make_source(name, rows().apply_hints(schema_contract=contract))


def read_files(
    source: str,
    table_name: str,
    folder: Path,
    glob: str,
    setting: str,
    fmt: CsvFormat,
    hints: dict[str, Any],
) -> Iterator[Any]:
    """Each new or changed file once, as Arrow chunks; unparsable rows to _rejected_rows.

    A file is skipped when it is the one recorded when it was loaded (same size
    and mtime, or same bytes); a changed file is read again, and the merge keeps
    that idempotent. Loads of files with no row in raw yet append.
    """
    state = dlt.current.resource_state()
    loaded: dict[str, dict[str, Any]] = state.setdefault(STATE_FILES, {})
    run = start_run(state, files_read=[], files_rejected=[], new_columns=[])
    loaded_at = datetime.now(UTC)

    pending = []
    for path in list_folder(folder, glob, setting):
        recorded = loaded.get(path.name)
        if already_loaded(path, recorded):  # remember a new mtime: next time, no digest
            loaded[path.name] = {**recorded, "mtime_ns": path.stat().st_mtime_ns}
        else:
            pending.append(path)
    pipeline = current_pipeline()
    present = files_in_raw(pipeline, table_name, [path.name for path in pending])
    disposition = write_disposition_for(present)
    spill_dir = pipeline.working_dir if pipeline is not None else None
    remove_spill_folders(spill_dir)  # a killed run's, if any
    for path in pending:
        signature = file_signature(path)
        try:
            csv_file = read_csv_file(path, fmt, spill_dir)
        except UnreadableFileError as error:
            log.warning("%s: rejected the whole file: %s", source, error)
            reject = unreadable_file_reject(path, error)
            yield rejected_rows(source, table_name, [reject])
            run["rows_read"] += 1
            run["rows_rejected"] += 1
            run["files_rejected"].append(f"{path.name} ({reject['reason']})")
        else:
            try:
                for column in csv_file.new_columns:
                    if column not in run["new_columns"]:
                        run["new_columns"].append(column)
                for chunk in csv_file.batches(loaded_at, CHUNK_ROWS):
                    yield csv_item(chunk, table_name, disposition, hints)
                if csv_file.rejects:
                    yield rejected_rows(source, table_name, csv_file.rejects)
            finally:
                csv_file.close()
            run["rows_read"] += csv_file.rows_read
            run["rows_rejected"] += len(csv_file.rejects)
        run["files_read"].append(path.name)
        loaded[path.name] = signature

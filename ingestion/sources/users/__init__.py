"""Users CSV exports -> raw.users: every row as sent, keyed by its file and line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from ingestion.rejected import rejected_rows

from .helpers import (
    UnreadableFileError,
    already_loaded,
    current_pipeline,
    file_signature,
    files_in_raw,
    list_inbox,
    read_csv_file,
    remove_spill_folders,
    schema_contract_for,
    unreadable_file_reject,
    users_item,
    write_disposition_for,
)
from .settings import CHUNK_ROWS, RESOURCE_NAME, SOURCE_NAME, STATE_FILES, STATE_LAST_RUN

log = logging.getLogger(__name__)


@dlt.source(name=SOURCE_NAME)
def users_source(
    inbox: str = dlt.config.value, schema_contract: str = dlt.config.value
) -> DltResource:
    """The users CSV exports in `inbox`; `schema_contract` is "evolve" or "freeze".

    Bad settings fail here, before the pipeline starts, with the config key named.
    """
    contract = schema_contract_for(schema_contract)
    list_inbox(inbox)
    return users(inbox).apply_hints(schema_contract=contract)


@dlt.resource(name=RESOURCE_NAME)
def users(inbox: str) -> Iterator[Any]:
    """Each new or changed export once, as Arrow chunks; unparsable rows to _rejected_rows.

    raw.users is keyed on `_row_key` (`<file>:<line>`), declared in `users_item`.
    A file is skipped when it is the one recorded when it was loaded (same size
    and mtime, or same bytes); a changed file is read again, and the merge keeps
    that idempotent.
    Loads of files with no row in raw yet append (see `write_disposition_for`).
    """
    state = dlt.current.resource_state()
    loaded: dict[str, dict[str, Any]] = state.setdefault(STATE_FILES, {})
    run: dict[str, Any] = {
        "rows_read": 0,
        "rows_rejected": 0,
        "rows_collapsed": 0,
        "files_read": [],
        "new_columns": [],
    }
    state[STATE_LAST_RUN] = run
    loaded_at = datetime.now(UTC)

    pending = []
    for path in list_inbox(inbox):
        recorded = loaded.get(path.name)
        if already_loaded(path, recorded):  # remember a new mtime: next time, no digest
            loaded[path.name] = {**recorded, "mtime_ns": path.stat().st_mtime_ns}
        else:
            pending.append(path)
    pipeline = current_pipeline()
    disposition = write_disposition_for(files_in_raw(pipeline, [path.name for path in pending]))
    spill_dir = pipeline.working_dir if pipeline is not None else None
    remove_spill_folders(spill_dir)  # a killed run's, if any
    for path in pending:
        signature = file_signature(path)
        try:
            csv_file = read_csv_file(path, spill_dir)
        except UnreadableFileError as error:
            log.warning("users: rejected the whole file: %s", error)
            reject = unreadable_file_reject(path, error)
            yield rejected_rows(SOURCE_NAME, RESOURCE_NAME, [reject])
            run["rows_read"] += 1
            run["rows_rejected"] += 1
        else:
            try:
                for column in csv_file.new_columns:
                    if column not in run["new_columns"]:
                        log.warning("users: new column %r in %s", column, path.name)
                        run["new_columns"].append(column)
                for table in csv_file.batches(loaded_at, CHUNK_ROWS):
                    yield users_item(table, disposition)
                if csv_file.rejects:
                    yield rejected_rows(SOURCE_NAME, RESOURCE_NAME, csv_file.rejects)
            finally:
                csv_file.close()
            run["rows_read"] += csv_file.rows_read
            run["rows_rejected"] += len(csv_file.rejects)
        run["files_read"].append(path.name)
        loaded[path.name] = signature

"""The `jsonl` kind: JSON lines from segment files or a Redis Stream -> one raw table.

Segments are read in name order from the position stored with the last load
(complete lines only: a segment still being written is finished later); a
broker is read through a consumer group and acknowledged after the load.
Records re-sent with a key raw already holds collapse (the first one stays);
lines that are not JSON objects, or have no key, go to raw._rejected_rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt

from .common import contract_for, current_pipeline, make_source, option
from .jsonl_reader import (
    DEFAULT_CONSUMER,
    DEFAULT_GROUP,
    DEFAULT_REDIS_URL,
    REDIS_CLAIM_IDLE_MS,
    FileSegments,
    JsonlTable,
    make_backend,
    read_lines,
    segment_folder,
)


def jsonl_source(
    name: str,
    key: str,
    folder: str | None = None,
    glob: str = "*.jsonl",
    fields: list[str] | None = None,
    cursor_field: str | None = None,
    table: str | None = None,
    schema_contract: str = "evolve",
    backend: str = "files",
    redis_url: str = DEFAULT_REDIS_URL,
    stream: str | None = None,
    group: str = DEFAULT_GROUP,
    consumer: str = DEFAULT_CONSUMER,
    claim_idle_ms: int = REDIS_CLAIM_IDLE_MS,
    max_batch: int | None = None,
    stream_backend: Any = None,
    folder_setting: str | None = None,
) -> Any:
    """JSON lines keyed by `key` as the dlt source `name`, loading raw.`table` (default `name`).

    `fields` are extracted first (any other field becomes a text column too);
    `cursor_field` is the records' own time, which the scaffold uses for
    freshness. Pass `stream_backend` to keep hold of a broker: the caller
    acknowledges it after `pipeline.run` returned (RedisStream.acknowledge).
    `max_batch` bounds one run to that many lines (micro-batches).
    """
    del cursor_field  # raw keeps every field as text; the cursor matters downstream
    spec = JsonlTable(name, table or name, key, tuple(fields or ()))
    contract = contract_for(name, schema_contract)
    if stream_backend is None:
        stream_backend = make_backend(
            name, backend, redis_url, stream, group, consumer, claim_idle_ms
        )
    if stream_backend is None:
        if folder is None:
            raise FileNotFoundError(f"no folder: set {option(name, 'folder')}")
        setting = folder_setting or option(name, "folder")
        stream_backend = FileSegments(segment_folder(folder, setting), glob)

    @dlt.resource(name=spec.table)
    def lines() -> Iterator[Any]:
        """New lines since the stored position; re-sent keys never load twice.

        Repeats are dropped before they are yielded (which is how they are
        counted): of the run and, on DuckDB, of raw; then the rows are appended.
        On another destination the raw table is an insert-only merge on the key.
        """
        yield from read_lines(
            spec,
            stream_backend,
            dlt.current.resource_state(),
            datetime.now(UTC),
            current_pipeline(),
            max_lines=max_batch,
        )

    return make_source(name, lines().apply_hints(schema_contract=contract))

"""dlt source for the events stream: JSONL segments or a Redis Stream → raw.events (+ rejects)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from .helpers import (
    FileSegments,
    contract_mode,
    current_pipeline,
    inbox_dir,
    make_backend,
    read_events,
)
from .settings import (
    DEFAULT_CONSUMER,
    DEFAULT_GROUP,
    DEFAULT_REDIS_URL,
    DEFAULT_STREAM,
    REDIS_CLAIM_IDLE_MS,
    RESOURCE_NAME,
    SOURCE_NAME,
)


@dlt.source(name=SOURCE_NAME)
def events_source(
    inbox: str = dlt.config.value,
    schema_contract: str = dlt.config.value,
    backend: str = "files",
    redis_url: str = DEFAULT_REDIS_URL,
    stream: str = DEFAULT_STREAM,
    group: str = DEFAULT_GROUP,
    consumer: str = DEFAULT_CONSUMER,
    claim_idle_ms: int = REDIS_CLAIM_IDLE_MS,
    max_batch: int | None = None,
    stream_backend: Any = None,
) -> DltResource:
    """Events from segment files `<inbox>/*.jsonl` (backend "files") or a Redis Stream.

    Pass `stream_backend` to keep hold of the reader: a broker backend is
    acknowledged by the caller after `pipeline.run` returned (RedisStream.acknowledge).
    `max_batch` bounds one run to that many lines (micro-batches).
    """
    if stream_backend is None:
        stream_backend = make_backend(backend, redis_url, stream, group, consumer, claim_idle_ms)
    return events(inbox, stream_backend, max_batch).apply_hints(
        schema_contract=contract_mode(schema_contract)
    )


@dlt.resource(name=RESOURCE_NAME)
def events(inbox: str, stream_backend: Any = None, max_batch: int | None = None) -> Iterator[Any]:
    """New events since the stored position; re-sent event_ids never load twice.

    The resource drops repeats before yielding (which is how it counts them):
    of the run and, on DuckDB, of raw.events, and then appends; on another
    destination raw.events is an insert-only merge on event_id (the table hints
    sit on the chunks, see `events_item`).
    """
    yield from read_events(
        stream_backend if stream_backend is not None else FileSegments(inbox_dir(inbox)),
        dlt.current.resource_state(),
        datetime.now(UTC),
        current_pipeline(),
        max_lines=max_batch,
    )

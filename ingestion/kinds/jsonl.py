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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dlt

from .common import (
    Flag,
    RawTable,
    SourceConfigError,
    check_formats,
    check_raw_names,
    check_stored_name,
    declared_key,
    file_flags,
    make_source,
    option,
    raw_to_check,
)
from .jsonl_reader import LINE_COLUMN, SEGMENT_COLUMN, FileSegments, JsonlTable, read_lines

BACKENDS = ("files", "redis")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GROUP = "warehouse"

# Options that hold a secret: read from env or .dlt/secrets.toml, refused in config.toml.
SECRET_OPTIONS: tuple[str, ...] = ("redis_url",)


def jsonl_source(
    name: str,
    key: str | list[str] | None = None,
    folder: str | None = None,
    glob: str = "*.jsonl",
    fields: list[str] | None = None,
    cursor_field: str | None = None,
    formats: dict[str, str] | None = None,
    table: str | None = None,
    schema_contract: str = "evolve",
    backend: str = "files",
    redis_url: str = DEFAULT_REDIS_URL,
    stream: str | None = None,
    group: str = DEFAULT_GROUP,
    consumer: str = "ingestion-1",
    claim_idle_ms: int = 60_000,
    max_batch: int | None = None,
    stream_backend: Any = None,
    folder_setting: str | None = None,
) -> Any:
    """JSON lines keyed by `key` (a field, a list of fields, or none: each line is then
    its own record) as the dlt source `name`, loading raw.`table` (default `name`).

    `fields` are extracted first (any other field becomes a text column too);
    `cursor_field` is the records' own time: raw keeps it as sent, the scaffold
    types it as a UTC timestamp and quarantines records without a valid one.
    `stream` defaults to the source's name; pending entries of
    another consumer idle for `claim_idle_ms` are taken over (it died between
    load and ack). Pass `stream_backend` to keep hold of a broker: the caller
    acknowledges it after `pipeline.run` returned (RedisStream.acknowledge).
    `max_batch` bounds one run to that many lines (micro-batches).
    """
    del cursor_field  # raw keeps every field as text; the cursor matters downstream
    check_formats(name, formats)  # for the scaffold, as the csv kind's
    check_raw_names(name, "fields", fields or [])
    (raw,) = raw_tables(name, {"key": key, "table": table})
    spec = JsonlTable(name, raw.name, raw.key, tuple(fields or ()))
    if stream_backend is None:
        stream_backend = open_broker(
            name,
            backend=backend,
            redis_url=redis_url,
            stream=stream,
            group=group,
            consumer=consumer,
            claim_idle_ms=claim_idle_ms,
        )
    if stream_backend is None:
        if folder is None:
            raise FileNotFoundError(f"no folder: set {option(name, 'folder')}")
        stream_backend = FileSegments(Path(folder), glob, folder_setting or option(name, "folder"))

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
            raw_to_check(),
            max_lines=max_batch,
        )

    return make_source(name, schema_contract, lines())


with_flags = file_flags  # `--inbox ROOT`: the files are in ROOT/<name>


def watched(name: str, options: dict[str, Any], inbox: Flag | None) -> tuple[str, str] | None:
    """The folder and glob a file sensor watches for this source (a broker: none)."""
    if options.get("backend", "files") != "files":
        return None
    options = file_flags(name, options, inbox, None)
    return (options["folder"], options["glob"]) if options.get("folder") else None


def probe(name: str, options: dict[str, Any], inbox: Flag | None) -> dict[str, Any] | None:
    """Where new data would show, for a run that asks before starting dlt
    (ingestion/unchanged.py): the folder, or the stream's consumer group. None (always
    run) for a Redis URL with a password or user (the record keeps the URL)."""
    if options.get("backend", "files") == "redis":
        url = options.get("redis_url") or DEFAULT_REDIS_URL
        if urlsplit(url).username or urlsplit(url).password:
            return None
        stream = options.get("stream") or name
        group = options.get("group") or DEFAULT_GROUP
        return {"redis": {"url": url, "stream": stream, "group": group}}
    folder = watched(name, options, inbox)
    return {"folder": str(Path(folder[0]).resolve())} if folder else None


def raw_tables(name: str, options: dict[str, Any]) -> list[RawTable]:
    """One raw table, `table` (default the source's name), one row per key (the first
    record sent), or per line when the records have no key."""
    table = check_stored_name(f"sources.{name}.table", options.get("table") or name)
    key = declared_key(name, "key", options.get("key"))
    time = options.get("cursor_field")
    if time is not None:
        check_raw_names(name, "cursor_field", [time])
    return [RawTable(table, key, versioned=False, time=time, lineage=(SEGMENT_COLUMN, LINE_COLUMN))]


def open_broker(
    name: str,
    *,
    backend: str,
    redis_url: str,
    stream: str | None,
    group: str,
    consumer: str,
    claim_idle_ms: int,
    **_other_options: Any,
) -> Any:
    """The broker a source's options name (a `RedisStream`), or None for "files"."""
    if backend not in BACKENDS:
        raise SourceConfigError(
            f"{option(name, 'backend')} must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    if backend == "files":
        return None
    try:
        from .redis_stream import RedisStream  # here: the files backend needs no redis client
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        raise SourceConfigError(
            f'sources.{name}.backend = "redis" needs the redis extra: '
            'pip install "ml-warehouse[redis]"'
        ) from None
    return RedisStream(redis_url, stream or name, group, consumer, claim_idle_ms=claim_idle_ms)

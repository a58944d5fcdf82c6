"""Reading JSON lines (segment files or a broker) and turning them into raw rows.

Reading sits behind `StreamBackend` (read lines after a position, commit the
position) so a broker backend can sit next to `FileSegments`. Parsing and
dedupe run in a scratch DuckDB over Arrow batches: no per-line Python.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import dlt
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.rejected import REJECTED_TABLE, data_rows, rejected_rows

from .common import LOADED_AT_COLUMN, SourceConfigError, option, start_run

log = logging.getLogger(__name__)

# Lineage columns added to every raw row.
SEGMENT_COLUMN = "_segment"
LINE_COLUMN = "_line"
LINEAGE_COLUMNS = {
    SEGMENT_COLUMN: {"data_type": "text", "nullable": False},
    LINE_COLUMN: {"data_type": "bigint", "nullable": False},
    LOADED_AT_COLUMN: {"data_type": "timestamp", "nullable": False},
}
# Re-sent records collapse on the key; the first occurrence stays in raw.
INSERT_ONLY_MERGE = {"disposition": "merge", "strategy": "insert-only"}
# ... unless the resource itself dropped every key raw holds (LoadedKeys): then the
# merge would insert every row anyway, after a second copy through staging.
CHECKED_DISPOSITION = "append"

# Resource state keys.
STATE_SEGMENTS = "segments"  # {segment file name: complete lines consumed}
# {segment file name: byte offset after those lines}: a run skips segments that
# did not grow and seeks instead of re-reading; `segments` stays the position.
STATE_SEGMENT_BYTES = "segment_bytes"

# Lines parsed (and checked against the run's keys) at a time; each check scans the
# keys seen so far, so bigger batches mean fewer scans.
BATCH_LINES = 250_000
# Rows per yielded Arrow table.
YIELD_ROWS = 100_000
# Bytes read from a segment at a time: bounds memory for very large segments. Small
# on purpose: a read buffer above glibc's largest mmap threshold (32 MiB) is mapped
# and unmapped again on every read, so reading 10M events in 2020 segments took
# 3.5 s of CPU with 32 MiB blocks and 1.1 s with these.
READ_BLOCK_BYTES = 1024 * 1024
# Memory cap of the scratch DuckDB that parses lines and remembers this run's keys.
# Every batch probes all keys seen so far: 10M of them (~240 MB) stay in memory
# under 320MB, where 192MB made each probe read spilled blocks (10M events: -3 s).
SCRATCH_MEMORY_LIMIT = "320MB"

# Reasons a line goes to raw._rejected_rows instead of its raw table.
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_MALFORMED_JSON = "malformed_json"
REASON_NOT_AN_OBJECT = "not_an_object"

BACKENDS = ("files", "redis")
# The redis backend's options (redis_stream.py holds the client) and their defaults;
# the stream defaults to the source's name.
BROKER_OPTIONS = ("backend", "redis_url", "stream", "group", "consumer", "claim_idle_ms")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GROUP = "warehouse"
DEFAULT_CONSUMER = "ingestion-1"
# Pending entries of other consumers idle this long are claimed (XAUTOCLAIM):
# a consumer that died between load and ack hands its entries over.
REDIS_CLAIM_IDLE_MS = 60_000


@dataclass(frozen=True)
class JsonlTable:
    """What a `jsonl` source loads: its name, raw table, key and expected fields."""

    source: str
    table: str
    key: str
    fields: tuple[str, ...] = ()

    @property
    def known(self) -> tuple[str, ...]:
        """The fields extracted by name: the key first, then the declared ones."""
        return (self.key, *(f for f in self.fields if f != self.key))

    @property
    def columns(self) -> dict[str, Any]:
        """dlt column hints of the raw table (fields found beyond these are added as text)."""
        return {
            **{name: {"data_type": "text", "nullable": name != self.key} for name in self.known},
            **LINEAGE_COLUMNS,
        }

    @property
    def missing_key_reason(self) -> str:
        return f"missing_{self.key}"

    def schema(self, extra: list[str]) -> pa.Schema:
        """Arrow schema of the raw rows, nullability as declared in `columns`."""
        return pa.schema(
            [
                *(pa.field(k, pa.string(), nullable=k != self.key) for k in self.known),
                *(pa.field(k, pa.string()) for k in extra),
                pa.field(SEGMENT_COLUMN, pa.string(), nullable=False),
                pa.field(LINE_COLUMN, pa.int64(), nullable=False),
                pa.field(LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False),
            ]
        )


LINES_SCHEMA = pa.schema(
    [
        (SEGMENT_COLUMN, pa.dictionary(pa.int32(), pa.string())),
        (LINE_COLUMN, pa.int64()),
        ("line", pa.large_string()),
        ("undecodable", pa.bool_()),
    ]
)


# --------------------------------------------------------------------------- config


def segment_folder(folder: str, setting: str) -> Path:
    """The segment folder; a missing one is a configuration error, not an empty stream."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"folder not found: {path} (set by {setting})")
    return path


# --------------------------------------------------------------------------- reading


@dataclass
class LineBatch:
    """Lines read after a position, and the position once they are consumed.

    `lines` follows LINES_SCHEMA: `line` is the text, which may still end
    with its "\\n" / "\\r\\n" (JSON ignores it; payloads are stored without it);
    bytes that are not UTF-8 are replaced and `undecodable` set. `position` holds
    updates to the resource state: {state key: {stream name: value}}.
    `redelivered` marks lines a broker hands out again (delivered before, never
    acknowledged): they may already be in a committed load, so their rejected
    rows are checked against raw._rejected_rows before being written again.
    """

    lines: pa.Table
    position: dict[str, dict[str, Any]]
    redelivered: bool = False


class StreamBackend(Protocol):
    """Where event lines come from: segment files here, a broker in `redis_stream.RedisStream`.

    `_segment`/`_line` of a line are its stream and an order-preserving bigint
    position in it (files: name and line number; Redis: stream and entry id as
    ms * 10**6 + seq; Kafka would be topic-partition and offset).
    """

    def read(self, position: Mapping[str, Any], max_lines: int) -> Iterator[LineBatch]:
        """Batches of at most `max_lines` lines after `position` (the resource state), in order."""
        ...

    def commit(self, position: Mapping[str, dict[str, Any]]) -> None:
        """Called once a batch went to dlt, before the load: a broker stages its acknowledgement
        here and sends it after `pipeline.run` returned (see RedisStream.acknowledge)."""
        ...

    def location(self, segment: str, line: int) -> str:
        """Where a line came from, as raw._rejected_rows.location shows it."""
        ...


class BrokerBackend(StreamBackend, Protocol):
    """A backend whose positions live in a broker: acknowledged after the load committed.

    The caller of `pipeline.run` holds it: `acknowledge()` after run returned,
    `discard()` when it failed (the entries are delivered again). A Kafka
    backend maps onto it as topic-partition → `_segment`, offset → `_line`,
    `acknowledge` = commit the offsets after the batch's last message.
    """

    def acknowledge(self) -> int:
        """Acknowledge what the last run committed; returns how many entries."""
        ...

    def discard(self) -> None:
        """The run failed: acknowledge nothing."""
        ...

    def lag(self) -> Any:
        """Entries not yet acknowledged (an object with `.total`, None when unknown)."""
        ...

    def wait(self, seconds: float) -> bool:
        """Block up to `seconds` for new entries; True when some arrived."""
        ...

    def close(self) -> None: ...


class FileSegments:
    """JSONL segment files in a folder, read in name order from {segment: lines consumed}.

    Only complete lines are consumed: a last line without its "\\n" (a segment
    still being written) stays unread until a later run finds it completed.
    """

    def __init__(
        self, inbox: Path, glob: str = "*.jsonl", block_bytes: int = READ_BLOCK_BYTES
    ) -> None:
        self.inbox = inbox
        self.glob = glob
        self.block_bytes = block_bytes

    def segments(self) -> list[Path]:
        files = (path for path in self.inbox.glob(self.glob) if path.is_file())
        return sorted(files, key=lambda path: path.name)

    def read(self, position: Mapping[str, Any], max_lines: int) -> Iterator[LineBatch]:
        lines_done: Mapping[str, int] = position.get(STATE_SEGMENTS, {})
        bytes_done: Mapping[str, int] = position.get(STATE_SEGMENT_BYTES, {})
        pieces: list[pa.Table] = []
        pending = 0
        moved: dict[str, dict[str, int]] = {STATE_SEGMENTS: {}, STATE_SEGMENT_BYTES: {}}
        for path in self.segments():
            name = path.name
            line, offset = lines_done.get(name, 0), bytes_done.get(name, 0)
            size = path.stat().st_size
            if offset > size or (offset == 0 and line > 0):
                line, offset = 0, 0  # rewritten or older state: find the position by counting
            elif offset == size:
                continue  # nothing new
            for first, texts, undecodable, ends in _complete_lines(
                path, offset, line, lines_done.get(name, 0), self.block_bytes
            ):
                start = 0
                while start < len(texts):
                    take = min(max_lines - pending, len(texts) - start)
                    piece = _lines_table(name, first + start, texts, undecodable, start, take)
                    pieces.append(piece)
                    pending += take
                    start += take
                    moved[STATE_SEGMENTS][name] = first + start - 1
                    moved[STATE_SEGMENT_BYTES][name] = int(ends[start - 1])
                    if pending == max_lines:
                        yield LineBatch(pa.concat_tables(pieces), moved)
                        pieces, pending = [], 0
                        moved = {STATE_SEGMENTS: {}, STATE_SEGMENT_BYTES: {}}
        if pieces:
            yield LineBatch(pa.concat_tables(pieces), moved)

    def commit(self, position: Mapping[str, dict[str, Any]]) -> None:
        """The position lives in dlt state only; nothing to acknowledge."""

    def location(self, segment: str, line: int) -> str:
        return f"{segment}:{line}"


def _complete_lines(
    path: Path, offset: int, line: int, skip_to: int, block_bytes: int
) -> Iterator[tuple[int, pa.LargeStringArray, pa.BooleanArray | None, np.ndarray]]:
    """Per read block: first line number, texts, undecodable mask, byte offset after each line.

    Reads from byte `offset`, the start of line `line` + 1; lines up to
    `skip_to` are counted but not returned. A trailing piece without "\\n" is
    never returned.
    """
    carry = b""
    with path.open("rb") as f:
        f.seek(offset)
        while block := f.read(block_bytes):
            data = carry + block if carry else block
            block_start = offset - len(carry)
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            if len(ends) == 0:
                carry, offset = data, block_start + len(data)
                continue
            complete = int(ends[-1]) + 1
            carry, offset = data[complete:], block_start + len(data)
            count = len(ends)
            if line + count <= skip_to:
                line += count
                continue
            skip = max(skip_to - line, 0)
            offsets = np.empty(count + 1, dtype=np.int64)
            offsets[0] = 0
            offsets[1:] = ends + 1
            raw = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
            texts, undecodable = _decode(raw.slice(skip))
            yield line + skip + 1, texts, undecodable, block_start + offsets[skip + 1 :]
            line += count


def _decode(raw: pa.LargeStringArray) -> tuple[pa.LargeStringArray, pa.BooleanArray | None]:
    """Lines that are not UTF-8 get U+FFFD and are flagged (rare: checked per line only then)."""
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        texts, flags = [], []
        for value in raw.view(pa.large_binary()).to_pylist():
            try:
                texts.append(value.decode("utf-8"))
                flags.append(False)
            except UnicodeDecodeError:
                texts.append(value.decode("utf-8", errors="replace"))
                flags.append(True)
        return pa.array(texts, pa.large_string()), pa.array(flags, pa.bool_())
    return raw, None


def _lines_table(
    segment: str,
    first_line: int,
    texts: pa.LargeStringArray,
    undecodable: pa.BooleanArray | None,
    start: int,
    count: int,
) -> pa.Table:
    flags = (
        undecodable.slice(start, count)
        if undecodable is not None
        else pa.array(np.zeros(count, dtype=bool))
    )
    return pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(count, dtype=np.int32)), pa.array([segment])
            ),
            pa.array(np.arange(first_line, first_line + count, dtype=np.int64)),
            texts.slice(start, count),
            flags,
        ],
        schema=LINES_SCHEMA,
    )


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedLines:
    """One batch split into new records, rejected lines, and records collapsed as re-sent."""

    records: pa.Table
    hashes: pa.Array
    rejected: pa.Table
    collapsed: int = 0
    extra_columns: list[str] = field(default_factory=list)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pointer(key: str) -> str:
    """JSON pointer for a top-level key (RFC 6901 escaping)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


# A line is an event candidate when it is a JSON object; JSON whitespace may lead.
# Computed once a batch (JSON parsing is the cost); the cheap prefix test goes
# first so that json_valid runs only on lines that can be objects.
_IS_OBJECT_SQL = """
    select
        not undecodable
        and (
            starts_with(line, '{')
            or left(ltrim(line, ' ' || chr(9) || chr(13)), 1) = '{'
        )
        and json_valid(line) as is_object
    from batch_lines
"""

_REJECTED_SQL = f"""
    select
        {SEGMENT_COLUMN}::varchar as {SEGMENT_COLUMN},
        {LINE_COLUMN},
        rtrim(line, chr(10) || chr(13)) as line,
        case
            when undecodable then '{REASON_INVALID_UTF8}'
            when not json_valid(line) then '{REASON_MALFORMED_JSON}'
            else '{REASON_NOT_AN_OBJECT}'
        end as reason
    from batch_lines
    where not is_object
"""


class LineParser:
    """Parses JSON lines in a scratch DuckDB and keeps the first occurrence of each key.

    The run's keys live in a DuckDB table under a memory cap that spills
    to `scratch_dir`, not in a Python set, so 10M ids stay out of the heap; a
    64-bit hash narrows each lookup, the ids themselves decide.
    """

    def __init__(self, scratch_dir: Path, loaded_at: datetime, spec: JsonlTable) -> None:
        self.spec = spec
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"set memory_limit = '{SCRATCH_MEMORY_LIMIT}'")
        self.con.execute(f"set temp_directory = '{scratch_dir / 'spill'}'")
        self.con.execute("set preserve_insertion_order = true")
        self.con.execute("set TimeZone = 'UTC'")
        self.con.execute("create table seen (h ubigint, key varchar)")
        self.loaded_at = loaded_at

    def close(self) -> None:
        self.con.close()

    def parse(self, lines: pa.Table) -> ParsedLines:
        is_object = self._classify(lines)
        self.con.register("batch_lines", lines.append_column("is_object", is_object))
        try:
            rejected = self.con.sql(_REJECTED_SQL).to_arrow_table()
            known = list(self.spec.known)
            rows, extra = self._extract(known)
            if extra:  # fields beyond the declared ones, extracted as text columns too
                rows, _ = self._extract([*known, *extra])
        finally:
            self.con.unregister("batch_lines")

        key = self.spec.key
        ids = pc.fill_null(rows[key], "")
        missing = pc.equal(ids, "")
        if pc.any(missing).as_py():
            rejected = pa.concat_tables(
                [rejected, _missing_key_rejects(rows.filter(missing), self.spec)]
            ).sort_by([(SEGMENT_COLUMN, "ascending"), (LINE_COLUMN, "ascending")])
            rows = rows.filter(pc.invert(missing))

        keep = self._first_occurrences(rows)
        fresh = rows.filter(keep)
        self._remember(fresh)
        columns = [*self.spec.known, *extra, SEGMENT_COLUMN, LINE_COLUMN, LOADED_AT_COLUMN]
        records = fresh.select(columns).cast(self.spec.schema(extra))
        collapsed = rows.num_rows - fresh.num_rows
        return ParsedLines(records, fresh["_h"], rejected, collapsed, extra)

    def _classify(self, lines: pa.Table) -> pa.ChunkedArray:
        self.con.register("batch_lines", lines)
        try:
            return self.con.sql(_IS_OBJECT_SQL).to_arrow_table()["is_object"]
        finally:
            self.con.unregister("batch_lines")

    def _extract(self, keys: list[str]) -> tuple[pa.Table, list[str]]:
        """Fields as text (JSON numbers as their text), plus keys beyond `keys`."""
        fields = ", ".join(f"f[{i + 1}] as {_quote(key)}" for i, key in enumerate(keys))
        rows = self.con.sql(
            f"""
            select
                {fields},
                {SEGMENT_COLUMN}::varchar as {SEGMENT_COLUMN},
                {LINE_COLUMN},
                $loaded_at::timestamptz as {LOADED_AT_COLUMN},
                hash(f[1]) as _h,
                case when coalesce(f[1], '') = '' then rtrim(line, chr(10) || chr(13)) end
                    as _payload,
                list_filter(json_keys(line), lambda k: not list_contains($keys, k)) as _extra
            from (
                select *, json_extract_string(line, $paths) as f
                from batch_lines
                where is_object
            )
            """,
            params={
                "paths": [_pointer(key) for key in keys],
                "keys": keys,
                "loaded_at": self.loaded_at,
            },
        ).to_arrow_table()
        extra = pc.unique(pc.list_flatten(rows["_extra"])).to_pylist()
        return rows, sorted(extra)

    def _first_occurrences(self, rows: pa.Table) -> np.ndarray:
        """Mask of rows whose key appears neither earlier in the batch nor in the run."""
        key = self.spec.key
        count = rows.num_rows
        if count == 0:
            return np.zeros(0, dtype=bool)
        hashes = rows["_h"].to_numpy()
        # a hash table pass (pandas), not a sort: rows sharing a hash with another row
        shared = pd.Series(hashes).duplicated(keep=False).to_numpy()
        keep = ~shared
        repeated = np.flatnonzero(shared)
        if len(repeated):  # the ids decide; rows come in (segment, line) order
            firsts: dict[str, int] = {}
            for position, value in zip(repeated, rows[key].take(repeated).to_pylist(), strict=True):
                firsts.setdefault(value, int(position))
            keep[list(firsts.values())] = True
        self.con.register("batch_hashes", pa.table({"h": hashes[keep]}))
        try:
            candidates = self.con.sql(
                "select key from seen where h in (select h from batch_hashes)"
            ).to_arrow_table()
        finally:
            self.con.unregister("batch_hashes")
        if candidates.num_rows:
            earlier = pc.is_in(rows[key], value_set=candidates["key"])
            keep &= ~earlier.to_numpy(zero_copy_only=False)
        return keep

    def _remember(self, fresh: pa.Table) -> None:
        self.con.register("fresh_ids", fresh.select(["_h", self.spec.key]))
        try:
            self.con.execute(f"insert into seen select _h, {_quote(self.spec.key)} from fresh_ids")
        finally:
            self.con.unregister("fresh_ids")


def _missing_key_rejects(rows: pa.Table, spec: JsonlTable) -> pa.Table:
    return pa.table(
        {
            SEGMENT_COLUMN: rows[SEGMENT_COLUMN],
            LINE_COLUMN: rows[LINE_COLUMN],
            "line": rows["_payload"],
            "reason": pa.array([spec.missing_key_reason] * rows.num_rows, pa.string()),
        }
    )


# --------------------------------------------------------------------------- destination


class LoadedKeys:
    """Finds which keys the raw table already holds, through the running pipeline.

    Lets the resource count records re-sent since earlier runs (rows_collapsed)
    and leave them out of the load; the insert-only merge on the key is the
    guarantee, this is the bookkeeping. For lines a broker redelivers it also
    finds the rejected rows already kept (raw._rejected_rows is append-only).
    """

    def __init__(self, pipeline: dlt.Pipeline | None, spec: JsonlTable) -> None:
        self.spec = spec
        self._stack = ExitStack()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._table = ""
        self._rejected_table = ""
        if pipeline is None:
            return
        client = self._stack.enter_context(pipeline.sql_client())
        native = client.native_connection
        if not isinstance(native, duckdb.DuckDBPyConnection):
            return
        self._con = native
        if not client.has_dataset():  # the first load: raw holds nothing yet
            return
        tables = {
            row[0]
            for row in native.execute(
                "select table_name from information_schema.tables where table_schema = $schema",
                {"schema": client.dataset_name},
            ).fetchall()
        }
        if spec.table in tables:
            self._table = client.make_qualified_table_name(spec.table)
        if REJECTED_TABLE in tables:
            self._rejected_table = client.make_qualified_table_name(REJECTED_TABLE)

    def close(self) -> None:
        self._stack.close()

    @property
    def checks_raw(self) -> bool:
        """Whether `drop_known` sees the raw table (a DuckDB warehouse; absent = empty)."""
        return self._con is not None

    def drop_known(self, records: pa.Table, hashes: pa.Array) -> tuple[pa.Table, int]:
        """The records raw does not hold yet, and how many it already held."""
        if self._con is None or not self._table or records.num_rows == 0:
            return records, 0
        key = self.spec.key
        self._con.register("incoming_hashes", pa.table({"h": hashes}))
        try:
            known = self._con.sql(
                f"select {_quote(key)} from {self._table}"
                f" where hash({_quote(key)}) in (select h from incoming_hashes)"
            ).to_arrow_table()
        finally:
            self._con.unregister("incoming_hashes")
        if known.num_rows == 0:
            return records, 0
        keep = pc.invert(pc.is_in(records[key], value_set=known[key]))
        fresh = records.filter(keep)
        return fresh, records.num_rows - fresh.num_rows

    def known_rejects(self, locations: list[str]) -> set[str]:
        """The locations raw._rejected_rows already holds for this source (redelivered lines)."""
        if self._con is None or not self._rejected_table or not locations:
            return set()
        self._con.register("incoming_locations", pa.table({"location": locations}))
        try:
            rows = self._con.execute(
                f"select distinct location from {self._rejected_table}"
                " where source = $source and location in (select location from incoming_locations)",
                {"source": self.spec.source},
            ).fetchall()
        finally:
            self._con.unregister("incoming_locations")
        return {row[0] for row in rows}


# --------------------------------------------------------------------------- resource body


def read_lines(
    spec: JsonlTable,
    backend: StreamBackend,
    state: MutableMapping[str, Any],
    loaded_at: datetime,
    pipeline: dlt.Pipeline | None,
    batch_lines: int = BATCH_LINES,
    max_lines: int | None = None,
) -> Iterator[Any]:
    """Yields new raw rows and rejected lines batch by batch, advancing the position.

    Counts land in state["last_run"] as they happen; dlt persists state only
    with a successful extract, so a failed run leaves the position untouched.
    `max_lines` bounds one run to a single batch of at most that many lines
    (micro-batches under `--follow`: backpressure); None reads everything.
    """
    last_run = start_run(state, new_columns=[])
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jsonl-")))
        parser = LineParser(scratch, loaded_at, spec)
        stack.callback(parser.close)
        raw_ids = LoadedKeys(pipeline, spec)
        stack.callback(raw_ids.close)
        # Every yielded event is then new to raw and to this run (the parser drops
        # repeats within it), so appending loads exactly what the merge would.
        disposition = CHECKED_DISPOSITION if raw_ids.checks_raw else INSERT_ONLY_MERGE
        for batch in backend.read(state, batch_lines if max_lines is None else max_lines):
            parsed = parser.parse(batch.lines)
            records, known = raw_ids.drop_known(parsed.records, parsed.hashes)
            for offset in range(0, records.num_rows, YIELD_ROWS):
                yield jsonl_item(records.slice(offset, YIELD_ROWS), spec, disposition)
            rejects = _rejected_dicts(parsed.rejected, backend.location)
            if batch.redelivered and rejects:
                done = raw_ids.known_rejects([r["location"] for r in rejects])
                rejects = [r for r in rejects if r["location"] not in done]
                known += parsed.rejected.num_rows - len(rejects)
            if rejects:
                yield rejected_rows(spec.source, spec.table, rejects)
            for key in parsed.extra_columns:
                if key not in last_run["new_columns"]:
                    last_run["new_columns"].append(key)
            last_run["rows_read"] += batch.lines.num_rows
            last_run["rows_rejected"] += len(rejects)
            last_run["rows_collapsed"] += parsed.collapsed + known
            for key, moved in batch.position.items():
                state.setdefault(key, {}).update(moved)
            backend.commit(batch.position)
            if max_lines is not None:
                break


def jsonl_item(table: pa.Table, spec: JsonlTable, write_disposition: Any) -> Any:
    """Mark a chunk for its raw table: keyed on the declared key, declared column types.

    The insert-only merge keeps the first occurrence of a key already in raw;
    `read_lines` appends instead when it dropped those itself.
    """
    return data_rows(
        table,
        table_name=spec.table,
        write_disposition=write_disposition,
        primary_key=spec.key,
        columns=spec.columns,
    )


def _rejected_dicts(
    rejected: pa.Table, location: Callable[[str, int], str]
) -> list[dict[str, Any]]:
    segments = rejected[SEGMENT_COLUMN].to_pylist()
    lines = rejected[LINE_COLUMN].to_pylist()
    return [
        {"location": location(segment, line), "reason": reason, "payload": payload}
        for segment, line, payload, reason in zip(
            segments,
            lines,
            rejected["line"].to_pylist(),
            rejected["reason"].to_pylist(),
            strict=True,
        )
    ]


# --------------------------------------------------------------------------- backends


def make_backend(
    source: str,
    backend: str = "files",
    redis_url: str = DEFAULT_REDIS_URL,
    stream: str | None = None,
    group: str = DEFAULT_GROUP,
    consumer: str = DEFAULT_CONSUMER,
    claim_idle_ms: int = REDIS_CLAIM_IDLE_MS,
) -> BrokerBackend | None:
    """The broker backend a config names; None for "files" (the resource opens the folder)."""
    if backend not in BACKENDS:
        raise SourceConfigError(
            f"{option(source, 'backend')} must be one of {', '.join(BACKENDS)}, not {backend!r}"
        )
    if backend == "files":
        return None
    try:
        from .redis_stream import RedisStream  # here: the files backend needs no redis client
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        raise SourceConfigError(
            f'sources.{source}.backend = "redis" needs the redis extra: pip install -e ".[redis]"'
        ) from None

    return RedisStream(redis_url, stream or source, group, consumer, claim_idle_ms=claim_idle_ms)

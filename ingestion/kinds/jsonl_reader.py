"""Reading JSON lines (segment files or a broker) and turning them into raw rows.

Reading sits behind `StreamBackend` (read lines after a position, commit the
position) so a broker backend can sit next to `FileSegments`. Parsing and
dedupe run in a scratch DuckDB over Arrow batches: no per-line Python.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import dlt
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.rejected import REJECTED_TABLE, data_rows, rejected_rows
from warehouse.sql import quote, registered

from .common import (
    LOADED_AT_COLUMN,
    SourceConfigError,
    folder_files,
    is_gzip,
    open_bytes,
    raw_column_name,
    read_ahead,
    start_run,
)

# Lineage columns added to every raw row.
SEGMENT_COLUMN = "_segment"
LINE_COLUMN = "_line"
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
# {segment file name: size, mtime and a digest of the part consumed}: a segment only
# grows, and one whose consumed part changed is refused (FileSegments.read).
STATE_SEGMENT_CHECKS = "segment_checks"
# The key the lines were read with: lines rejected for a missing key stay rejected once
# read, so a changed key asks for a full refresh instead of leaving them out unsaid.
STATE_KEY = "key"
SEGMENT_STATE = (STATE_SEGMENTS, STATE_SEGMENT_BYTES, STATE_SEGMENT_CHECKS)
# Bytes hashed at each end of a segment's consumed part: enough to tell a rewritten
# segment from a grown one without reading all of it on every run.
CHECK_SAMPLE_BYTES = 64 * 1024

# Lines parsed (and checked against the run's keys) at a time; each check scans the
# keys seen so far, so bigger batches mean fewer scans. A batch's records go to dlt as
# one Arrow table (one Parquet row group).
BATCH_LINES = 250_000
# Bytes read from a segment at a time: bounds memory for very large segments. Small
# on purpose: a read buffer above glibc's largest mmap threshold (32 MiB) is mapped
# and unmapped again on every read, so reading 10M events in 2020 segments took
# 3.5 s of CPU with 32 MiB blocks and 1.1 s with these.
READ_BLOCK_BYTES = 1024 * 1024
# Memory cap of the scratch DuckDB that parses lines and remembers this run's keys.
# Every batch probes all keys seen so far: 10M of them (~240 MB) stay in memory
# under 320MB, where 192MB made each probe read spilled blocks (10M events: -3 s).
SCRATCH_MEMORY_LIMIT = "320MB"

UTF8_BOM = b"\xef\xbb\xbf"

# Reasons a line goes to raw._rejected_rows instead of its raw table.
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_MALFORMED_JSON = "malformed_json"
REASON_NOT_AN_OBJECT = "not_an_object"


@dataclass(frozen=True)
class JsonlTable:
    """What a `jsonl` source loads: its name, raw table, key and expected fields.

    `key` is one field or several (a composite key); empty for records without a
    natural key, which are identified by their lineage (segment and line, or stream
    and entry id): a line re-read or redelivered still loads once.
    """

    source: str
    table: str
    key: tuple[str, ...]
    fields: tuple[str, ...] = ()

    @property
    def known(self) -> tuple[str, ...]:
        """The fields extracted by name: the key first, then the declared ones."""
        return (*self.key, *(f for f in self.fields if f not in self.key))

    @property
    def merge_key(self) -> list[str]:
        """The raw columns a record is one of a kind by: the key, else its lineage."""
        return list(self.key) or [SEGMENT_COLUMN, LINE_COLUMN]

    def identity_sql(self, column: Callable[[str], str]) -> str:
        """One text value per record from its key columns (`column(name)` is the SQL of
        each): what dedupe compares, the same over parsed lines and over raw."""
        if not self.key:
            return f"{column(SEGMENT_COLUMN)}::varchar || ':' || {column(LINE_COLUMN)}::varchar"
        if len(self.key) == 1:
            return column(self.key[0])
        return f"json_array({', '.join(column(k) for k in self.key)})::varchar"

    def schema(self, extra: list[str]) -> pa.Schema:
        """Arrow schema of the raw rows: dlt takes the raw table's columns from it (all
        text as sent, then lineage; the key and lineage are never null)."""
        return pa.schema(
            [
                *(pa.field(k, pa.string(), nullable=k not in self.key) for k in self.known),
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
    """Where lines come from: segment files here, a broker in `redis_stream.RedisStream`.

    `_segment`/`_line` of a line are its stream and an order-preserving bigint
    position in it (files: name and line number; Redis: stream and entry id).
    `commit` is called once a batch went to dlt, before the load: a broker stages
    its acknowledgement there and sends it after `pipeline.run` returned.
    """

    def read(self, position: Mapping[str, Any], max_lines: int) -> Iterator[LineBatch]: ...

    def commit(self, position: Mapping[str, dict[str, Any]]) -> None: ...

    def location(self, segment: str, line: int) -> str: ...


class FileSegments:
    """JSONL segment files in a folder, read in name order from {segment: lines consumed}.

    Only complete lines are consumed: a last line without its "\\n" (a segment
    still being written) stays unread until a later run finds it completed. A
    segment only grows: one whose loaded part changed (rewritten, cut shorter)
    is refused, named in `refused`, and the other segments still load.
    """

    def __init__(
        self, folder: Path, glob: str, setting: str, block_bytes: int = READ_BLOCK_BYTES
    ) -> None:
        self.folder, self.glob, self.setting = folder, glob, setting
        self.block_bytes = block_bytes
        self.refused: list[str] = []  # "<segment> (<what changed>)"
        self.ignored: list[str] = []  # files matching no pattern, at the last listing
        self.segments()  # a missing folder fails before the pipeline starts

    def segments(self) -> list[Path]:
        matched, self.ignored = folder_files(self.folder, self.glob, self.setting)
        return matched

    def read(self, position: Mapping[str, Any], max_lines: int) -> Iterator[LineBatch]:
        lines_done: Mapping[str, int] = position.get(STATE_SEGMENTS, {})
        bytes_done: Mapping[str, int] = position.get(STATE_SEGMENT_BYTES, {})
        checks: Mapping[str, dict[str, Any]] = position.get(STATE_SEGMENT_CHECKS, {})
        pieces: list[pa.Table] = []
        pending = 0
        moved: dict[str, dict[str, Any]] = {key: {} for key in SEGMENT_STATE}
        paths: dict[str, Path] = {}
        for path in self.segments():
            name = path.name
            line, offset = lines_done.get(name, 0), bytes_done.get(name, 0)
            if offset == 0 and line > 0:
                line = 0  # older state without byte offsets: find the position by counting
            elif offset:
                recorded = checks.get(name)
                if recorded is None or changed_since(path, recorded):
                    check = segment_check(path, recorded["offset"] if recorded else offset)
                    if check is None or (recorded and check["digest"] != recorded["digest"]):
                        what = "cut shorter" if check is None else "rewritten"
                        self.refused.append(f"{name} ({what} after lines 1-{line} loaded)")
                        continue
                if offset == data_size(path):
                    continue  # nothing new
            paths[name] = path
            for first, texts, undecodable, ends in _complete_lines(
                path, offset, line, lines_done.get(name, 0), self.block_bytes
            ):
                start = 0
                while start < len(texts):
                    take = min(max_lines - pending, len(texts) - start)
                    piece = lines_table(
                        name,
                        np.arange(first + start, first + start + take, dtype=np.int64),
                        texts.slice(start, take),
                        None if undecodable is None else undecodable.slice(start, take),
                    )
                    pieces.append(piece)
                    pending += take
                    start += take
                    moved[STATE_SEGMENTS][name] = first + start - 1
                    moved[STATE_SEGMENT_BYTES][name] = int(ends[start - 1])
                    if pending == max_lines:
                        yield LineBatch(pa.concat_tables(pieces), _checked(moved, paths))
                        pieces, pending = [], 0
                        moved = {key: {} for key in SEGMENT_STATE}
        if pieces:
            yield LineBatch(pa.concat_tables(pieces), _checked(moved, paths))

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
    with open_bytes(path) as f:
        if offset == 0 and f.read(len(UTF8_BOM)) == UTF8_BOM:
            offset = len(UTF8_BOM)  # a BOM is not part of the first line
        f.seek(offset)
        for block in _blocks(f, block_bytes):
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
            texts, undecodable = decode_lines(raw.slice(skip))
            yield line + skip + 1, texts, undecodable, block_start + offsets[skip + 1 :]
            line += count


def _blocks(f: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """The file's blocks; a .gz segment cut short (still being copied) ends where its
    data does, so its complete lines load now and the rest once it is whole."""
    while True:
        try:
            block = f.read(block_bytes)
        except EOFError:
            return
        if not block:
            return
        yield block


def _checked(
    moved: dict[str, dict[str, Any]], paths: Mapping[str, Path]
) -> dict[str, dict[str, Any]]:
    """The position with a check of each segment's part consumed so far (next run's
    comparison)."""
    for name, offset in moved[STATE_SEGMENT_BYTES].items():
        moved[STATE_SEGMENT_CHECKS][name] = segment_check(paths[name], offset)
    return moved


def changed_since(path: Path, recorded: Mapping[str, Any]) -> bool:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns) != (recorded.get("size"), recorded.get("mtime_ns"))


def segment_check(path: Path, offset: int) -> dict[str, Any] | None:
    """The segment's size and mtime now, and a digest of its first `offset` bytes (their
    first and last CHECK_SAMPLE_BYTES); None when it no longer has that many bytes."""
    stat = path.stat()
    digest = hashlib.sha256()
    head = min(offset, CHECK_SAMPLE_BYTES)
    tail_start = max(head, offset - CHECK_SAMPLE_BYTES)
    try:
        with open_bytes(path) as f:
            first = f.read(head)
            f.seek(tail_start)
            last = f.read(offset - tail_start)
    except EOFError:  # a .gz segment cut short
        return None
    if len(first) + len(last) != head + offset - tail_start:
        return None
    digest.update(first)
    digest.update(last)
    return {
        "offset": offset,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "digest": digest.hexdigest(),
    }


def data_size(path: Path) -> int:
    """Bytes of the segment's data: a .gz file's uncompressed size, from its trailer
    (modulo 4 GiB, and unreliable while the file is still being written: then the
    read finds the data's real end)."""
    if not is_gzip(path):
        return path.stat().st_size
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() < 4:
            return -1
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def decode_lines(raw: pa.LargeStringArray) -> tuple[pa.LargeStringArray, pa.BooleanArray | None]:
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


def lines_table(
    segment: str, lines: Any, texts: pa.LargeStringArray, undecodable: pa.BooleanArray | None
) -> pa.Table:
    """Lines of one segment (or stream) as LINES_SCHEMA rows."""
    count = len(texts)
    return pa.Table.from_arrays(
        [
            pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(count, dtype=np.int32)), pa.array([segment])
            ),
            pa.array(lines, pa.int64()),
            texts,
            undecodable if undecodable is not None else pa.array(np.zeros(count, dtype=bool)),
        ],
        schema=LINES_SCHEMA,
    )


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedLines:
    """One batch split into new records, rejected lines, and records collapsed as re-sent."""

    records: pa.Table
    identities: pa.Table  # the records' `_k` (identity_sql) and `_h` (its hash)
    rejected: pa.Table
    collapsed: int = 0


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
        with registered(self.con, "batch_lines", lines.append_column("is_object", is_object)):
            rejected = self.con.sql(_REJECTED_SQL).to_arrow_table()
            known = list(self.spec.known)
            rows, extra = self._extract(known, {})
            clashing = clashing_fields(known, extra)
            extra = [k for k in extra if k not in clashing]
            if extra or clashing:  # other fields become text columns too, named as in raw
                rows, _ = self._extract([*known, *extra], clashing)

        missing = pa.array(np.zeros(rows.num_rows, dtype=bool))
        for key in self.spec.key:
            missing = pc.or_(missing, pc.equal(pc.fill_null(rows[key], ""), ""))
        unloadable = [(missing, self._missing_key_reasons)]
        if clashing:  # a field that would load into another one's column: the line waits
            clash = pc.greater(pc.list_value_length(rows["_extra"]), 0)
            unloadable.append((pc.and_(clash, pc.invert(missing)), _clash_reasons(clashing)))
        for mask, reasons in unloadable:
            if pc.any(mask).as_py():
                rejected = pa.concat_tables([rejected, _row_rejects(rows.filter(mask), reasons)])
                rows = rows.filter(pc.invert(mask))
        rejected = rejected.sort_by([(SEGMENT_COLUMN, "ascending"), (LINE_COLUMN, "ascending")])
        extra = [raw_column_name(k) for k in extra]

        keep = self._first_occurrences(rows)
        fresh = rows.filter(keep)
        self._remember(fresh)
        columns = [*self.spec.known, *extra, SEGMENT_COLUMN, LINE_COLUMN, LOADED_AT_COLUMN]
        records = fresh.select(columns).cast(self.spec.schema(extra))
        collapsed = rows.num_rows - fresh.num_rows
        return ParsedLines(records, fresh.select(["_k", "_h"]), rejected, collapsed)

    def _missing_key_reasons(self, rows: pa.Table) -> list[str]:
        """missing_<field> of the first key field each rejected line lacks."""
        values = [rows[k].to_pylist() for k in self.spec.key]
        return [
            f"missing_{next(k for k, v in zip(self.spec.key, row, strict=True) if not v)}"
            for row in zip(*values, strict=True)
        ]

    def _classify(self, lines: pa.Table) -> pa.ChunkedArray:
        with registered(self.con, "batch_lines", lines):
            return self.con.sql(_IS_OBJECT_SQL).to_arrow_table()["is_object"]

    def _extract(self, keys: list[str], clashing: Mapping[str, str]) -> tuple[pa.Table, list[str]]:
        """Fields as text (JSON numbers as their text) under their raw column names, plus
        the keys of each line beyond `keys`; lines without the key or with a `clashing`
        field keep their text (`_payload`) for the rejected row."""
        fields = "".join(
            f"f[{i + 1}] as {quote(raw_column_name(key))}, " for i, key in enumerate(keys)
        )
        position = {key: i + 1 for i, key in enumerate(keys)}
        identity = self.spec.identity_sql(lambda c: f"f[{position[c]}]" if c in position else c)
        missing = " or ".join(f"coalesce(f[{position[k]}], '') = ''" for k in self.spec.key)
        missing = missing or "false"
        # A line holding a clashing field is the only kind with keys beyond these.
        clash = " or len(_extra) > 0" if clashing else ""
        rows = self.con.sql(
            f"""
            select
                {fields}{SEGMENT_COLUMN}::varchar as {SEGMENT_COLUMN},
                {LINE_COLUMN},
                $loaded_at::timestamptz as {LOADED_AT_COLUMN},
                {identity} as _k,
                hash(_k) as _h,
                case
                    when {missing}{clash} then rtrim(line, chr(10) || chr(13))
                end as _payload,
                _extra
            from (
                select
                    *,
                    json_extract_string(line, $paths) as f,
                    list_filter(json_keys(line), lambda k: not list_contains($keys, k)) as _extra
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
        key = "_k"
        count = rows.num_rows
        if count == 0:
            return np.zeros(0, dtype=bool)
        hashes = rows["_h"].to_numpy()
        shared = sharing_a_value(hashes)
        keep = ~shared
        repeated = np.flatnonzero(shared)
        if len(repeated):  # the ids decide; rows come in (segment, line) order
            firsts: dict[str, int] = {}
            for position, value in zip(repeated, rows[key].take(repeated).to_pylist(), strict=True):
                firsts.setdefault(value, int(position))
            keep[list(firsts.values())] = True
        with registered(self.con, "batch_hashes", pa.table({"h": hashes[keep]})):
            candidates = self.con.sql(
                "select key from seen where h in (select h from batch_hashes)"
            ).to_arrow_table()
        if candidates.num_rows:
            earlier = pc.is_in(rows[key], value_set=candidates["key"])
            keep &= ~earlier.to_numpy(zero_copy_only=False)
        return keep

    def _remember(self, fresh: pa.Table) -> None:
        with registered(self.con, "fresh_ids", fresh.select(["_h", "_k"])):
            self.con.execute("insert into seen select _h, _k from fresh_ids")


# A small batch (an incremental run's only one, the last of a large load, a micro-batch
# under --follow) is sorted: importing pandas for its hash table costs 0.35 s. Full
# batches of a large load use the hash table: 0.008 s against 0.024 s a batch, 40
# batches at 10M events. Half a batch, as a full one's rows are fewer than its lines
# by the lines it rejected.
SORTED_BELOW = BATCH_LINES // 2


def sharing_a_value(values: np.ndarray) -> np.ndarray:
    """Mask of the values that occur more than once: a hash table pass (pandas), not a
    sort, on a large batch (10M events: 0.07 s a million against 0.2 s for Arrow's)."""
    if len(values) < SORTED_BELOW:
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        return counts[inverse] > 1
    import pandas as pd

    return pd.Series(values).duplicated(keep=False).to_numpy()


def clashing_fields(known: list[str], extra: list[str]) -> dict[str, str]:
    """{field: the raw column it shares}: extra fields whose raw name is a declared field's
    or another spelling's (`eventId` beside `event_id`); they cannot load."""
    names = [raw_column_name(k) for k in extra]
    taken = set(known)
    return {
        key: name
        for key, name in zip(extra, names, strict=True)
        if name in taken or names.count(name) > 1
    }


def _clash_reasons(clashing: Mapping[str, str]) -> Callable[[pa.Table], list[str]]:
    """Per rejected line: duplicate_column_<raw column> of its first clashing field."""

    def reasons(rows: pa.Table) -> list[str]:
        return [
            f"duplicate_column_{clashing[next(k for k in keys if k in clashing)]}"
            for keys in rows["_extra"].to_pylist()
        ]

    return reasons


def _row_rejects(rows: pa.Table, reasons: Callable[[pa.Table], list[str]]) -> pa.Table:
    return pa.table(
        {
            SEGMENT_COLUMN: rows[SEGMENT_COLUMN],
            LINE_COLUMN: rows[LINE_COLUMN],
            "line": rows["_payload"],
            "reason": pa.array(reasons(rows), pa.string()),
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
        self._con: duckdb.DuckDBPyConnection | None = None  # None: not DuckDB, or no pipeline
        self._table = self._rejected_table = ""
        if pipeline is not None:
            client = self._stack.enter_context(pipeline.sql_client())
            if isinstance(client.native_connection, duckdb.DuckDBPyConnection):
                self._con = client.native_connection
                self._table = client.make_qualified_table_name(spec.table)
                self._rejected_table = client.make_qualified_table_name(REJECTED_TABLE)

    def close(self) -> None:
        self._stack.close()

    @property
    def checks_raw(self) -> bool:
        """Whether `drop_known` sees the raw table (a DuckDB warehouse; absent = empty)."""
        return self._con is not None

    def _ask(self, sql: str, incoming: pa.Table, **params: Any) -> pa.Table | None:
        """`sql` over the view `incoming`; None when raw has no such table yet."""
        if self._con is None or incoming.num_rows == 0:
            return None
        try:
            with registered(self._con, "incoming", incoming):
                return self._con.sql(sql, params=params).to_arrow_table()
        except duckdb.CatalogException:  # the first load of the table (or of raw)
            return None

    def drop_known(self, records: pa.Table, identities: pa.Table) -> tuple[pa.Table, int]:
        """The records raw does not hold yet, and how many it already held."""
        identity = self.spec.identity_sql(quote)
        known = self._ask(
            f"select k from (select {identity} as k from {self._table})"
            " where hash(k) in (select _h from incoming)",
            identities,
        )
        if not known:
            return records, 0
        fresh = records.filter(pc.invert(pc.is_in(identities["_k"], known[0])))
        return fresh, records.num_rows - fresh.num_rows

    def known_rejects(self, locations: list[str]) -> set[str]:
        """The locations raw._rejected_rows already holds for this source (redelivered lines)."""
        known = self._ask(
            f"select distinct location from {self._rejected_table}"
            " where source = $source and location in (select location from incoming)",
            pa.table({"location": pa.array(locations, pa.string())}),
            source=self.spec.source,
        )
        return set(known[0].to_pylist()) if known else set()


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
    last_run = start_run(state)
    key = list(spec.key)
    read_before = any(state.get(k) for k in (STATE_SEGMENTS, "stream_ids"))  # files, Redis
    if read_before and state.get(STATE_KEY, key) != key:
        raise SourceConfigError(
            f"sources.{spec.source}.key is {key} but the lines loaded so far were read with "
            f"{state[STATE_KEY]}: run python -m ingestion {spec.source} --full-refresh to "
            "read them all again with the new key"
        )
    state[STATE_KEY] = key
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jsonl-")))
        parser = LineParser(scratch, loaded_at, spec)
        stack.callback(parser.close)
        raw_ids = LoadedKeys(pipeline, spec)
        stack.callback(raw_ids.close)
        # Every yielded event is then new to raw and to this run (the parser drops
        # repeats within it), so appending loads exactly what the merge would.
        disposition = CHECKED_DISPOSITION if raw_ids.checks_raw else INSERT_ONLY_MERGE

        def prepared(batches: Iterator[LineBatch]) -> Iterator[tuple[Any, ...]]:
            for batch in batches:
                parsed = parser.parse(batch.lines)
                yield batch, parsed, *raw_ids.drop_known(parsed.records, parsed.identities)

        batches = prepared(backend.read(state, batch_lines if max_lines is None else max_lines))
        if isinstance(backend, FileSegments):
            # Files: the next batch is read and parsed while dlt writes this one. A
            # broker's batches are not read ahead: each is acknowledged below before
            # the next is asked for. The segments' start positions are read from
            # `state` before any batch of theirs is handed out, so its updates below
            # never race with them.
            batches = read_ahead(batches)
            stack.callback(batches.close)  # before the parser and raw_ids close
        for batch, parsed, records, known in batches:
            if records.num_rows:
                yield data_rows(
                    records,
                    table_name=spec.table,
                    write_disposition=disposition,
                    primary_key=spec.merge_key,
                )
            rejects = _rejected_dicts(parsed.rejected, backend.location)
            if batch.redelivered and rejects:
                done = raw_ids.known_rejects([r["location"] for r in rejects])
                rejects = [r for r in rejects if r["location"] not in done]
                known += parsed.rejected.num_rows - len(rejects)
            if rejects:
                yield rejected_rows(spec.source, spec.table, rejects)
            last_run["rows_read"] += batch.lines.num_rows
            last_run["rows_rejected"] += len(rejects)
            last_run["rows_collapsed"] += parsed.collapsed + known
            for key, moved in batch.position.items():
                state.setdefault(key, {}).update(moved)
            backend.commit(batch.position)
            if max_lines is not None:
                break
        if isinstance(backend, FileSegments):  # what this run's listing found
            last_run["files_ignored"] = backend.ignored
            if backend.refused:
                last_run["files_refused"] = backend.refused


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

"""Redis Streams as a `StreamBackend`: a consumer group, bounded reads, XACK after the load.

Delivery is at-least-once: entries are acknowledged only once the dlt load that
holds them has committed (`acknowledge`, called by whoever ran the pipeline). A
consumer that dies between load and ack leaves its entries pending; the next
run reads them again first (flagged `redelivered`), and the event_id dedupe
plus the rejected-rows check make the result exactly-once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import redis

from .jsonl_reader import LineBatch, decode_lines, lines_table

log = logging.getLogger(__name__)

ACK_CHUNK = 10_000

# A stream entry carries one line: the JSON in this field. An entry without it is
# taken as the record itself (its field map, as a JSON object).
REDIS_DATA_FIELD = "data"
# Entries read per XREADGROUP call (bounded by what is left of --max-batch).
REDIS_READ_COUNT = 10_000
# Raw lineage for a stream entry: `_segment` = stream name and `_line` = the
# entry id `<ms>-<seq>` as one bigint, ms * 10**6 + seq (order-preserving;
# the last six digits are the sequence). Auto ids (XADD *) always fit.
REDIS_SEQ_FACTOR = 1_000_000
REDIS_MAX_MS = (2**63 - 1) // REDIS_SEQ_FACTOR - 1
STATE_STREAM_IDS = "stream_ids"  # {stream: last entry id delivered to a committed load}
# Test-only fault hook: exit hard after the load, before the XACK, when this env
# var is "exit_before_ack" (the crash a test cannot otherwise time).
FAULT_ENV = "INGESTION_EVENTS_FAULT"
FAULT_EXIT_BEFORE_ACK = "exit_before_ack"
FAULT_EXIT_CODE = 75


def entry_line(entry_id: bytes | str) -> int:
    """An entry id `<ms>-<seq>` as the bigint kept in raw._line (ms * 10**6 + seq)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    ms_value, seq_value = int(ms), int(seq or 0)
    if ms_value > REDIS_MAX_MS or seq_value >= REDIS_SEQ_FACTOR:
        raise ValueError(
            f"stream entry id {text} does not fit raw._line (ms * 10**6 + seq): "
            "produce with auto-generated ids (XADD <stream> * ...)"
        )
    return ms_value * REDIS_SEQ_FACTOR + seq_value


def entry_id(line: int) -> str:
    """The entry id back from raw._line."""
    return f"{line // REDIS_SEQ_FACTOR}-{line % REDIS_SEQ_FACTOR}"


def _payload(fields: Mapping[bytes, bytes]) -> bytes:
    """The event JSON of an entry: its `data` field, else the field map as a JSON object."""
    data = fields.get(REDIS_DATA_FIELD.encode())
    if data is not None:
        return data
    as_text = {
        k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items()
    }
    return json.dumps(as_text, ensure_ascii=False).encode()


class RedisStream:
    """One stream read through a consumer group; positions live in Redis, not in dlt state.

    `read` first claims entries other consumers left idle, then re-reads this
    consumer's own pending entries, then new ones, up to the stream's last id at
    the start of the run (so a run ends even while producers keep writing).
    `commit` (called by the resource as each batch goes to dlt) only stages the
    ids; `acknowledge` XACKs them after `pipeline.run` returned.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        read_count: int = REDIS_READ_COUNT,
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.url, self.stream, self.group, self.consumer = url, stream, group, consumer
        self.read_count = read_count
        self.claim_idle_ms = claim_idle_ms
        self._client: redis.Redis | None = None
        self._batch_ids: list[bytes] = []
        self._staged: list[bytes] = []

    # ----------------------------------------------------------------------- connection

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, decode_responses=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ensure_group(self) -> None:
        """Create the group (and stream) on first use; a new group reads the whole stream."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ----------------------------------------------------------------------- StreamBackend

    def location(self, segment: str, line: int) -> str:
        return f"{segment}:{entry_id(line)}"

    def read(self, position: Mapping[str, Any], max_lines: int) -> Iterator[LineBatch]:
        """Batches of at most `max_lines` entries: redelivered ones first, then new ones."""
        self._batch_ids, self._staged = [], []  # what an earlier failed run staged stays pending
        self.ensure_group()
        end = self._last_id()
        self._claim_idle(max_lines)
        after: bytes = b"0"
        while True:  # this consumer's pending entries (delivered, never acknowledged)
            entries = self._read_group(after, max_lines)
            if not entries:
                break
            after = entries[-1][0]
            batch = self._batch(entries, redelivered=True)
            if batch is not None:
                yield batch
        while end is not None:  # new entries, up to the last one that existed at the start
            entries = self._read_group(b">", max_lines, end)
            if not entries:
                break
            batch = self._batch(entries, redelivered=False)
            if batch is not None:
                yield batch
            if entry_line(entries[-1][0]) >= entry_line(end):
                break

    def commit(self, position: Mapping[str, dict[str, Any]]) -> None:
        """The batch went to dlt: acknowledge its entries once the load has committed."""
        self._staged.extend(self._batch_ids)
        self._batch_ids = []

    # ----------------------------------------------------------------------- after the load

    def acknowledge(self) -> int:
        """XACK every entry of the committed load; returns how many (call after pipeline.run)."""
        ids, self._staged = self._staged, []
        if ids and os.environ.get(FAULT_ENV) == FAULT_EXIT_BEFORE_ACK:
            os._exit(FAULT_EXIT_CODE)  # test hook: the crash between load and ack
        for start in range(0, len(ids), ACK_CHUNK):
            self.client.xack(self.stream, self.group, *ids[start : start + ACK_CHUNK])
        return len(ids)

    def discard(self) -> None:
        """The run failed: acknowledge nothing, the entries stay pending for the next run."""
        self._batch_ids, self._staged = [], []

    def lag(self) -> int | None:
        """Entries the group has not acknowledged: never delivered (XINFO GROUPS' lag,
        None when Redis cannot tell, after entries were deleted mid-stream) + pending."""
        info = self._group_info()
        lag = info.get("lag")  # absent before Redis 7
        return None if lag is None else int(lag) + int(info["pending"])

    def wait(self, seconds: float) -> bool:
        """Block up to `seconds` until the stream has entries the group has not been given."""
        last = self._group_info()["last-delivered-id"]
        block_ms = max(1, int(seconds * 1000))
        return bool(self.client.xread({self.stream: last}, count=1, block=block_ms))

    # ----------------------------------------------------------------------- internals

    def _group_info(self) -> dict[str, Any]:
        """The group's XINFO GROUPS entry (the group is created first if need be)."""
        self.ensure_group()
        groups = self.client.xinfo_groups(self.stream)
        return next(info for info in groups if _text(info["name"]) == self.group)

    def _last_id(self) -> bytes | None:
        newest = self.client.xrevrange(self.stream, "+", "-", count=1)
        return newest[0][0] if newest else None

    def _claim_idle(self, limit: int) -> None:
        """Take over entries other consumers left pending (they died between load and ack)."""
        cursor: bytes | str = "0-0"
        claimed = 0
        while claimed < limit:
            # the entries come back too (JUSTID would lose the cursor in redis-py); they
            # are read again below with this consumer's pending entries
            cursor, entries, *_ = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=cursor,
                count=min(self.read_count, limit - claimed),
            )
            ids = [entry[0] for entry in entries]
            claimed += len(ids)
            if ids:
                log.warning("claimed %d idle entries of stream %s", len(ids), self.stream)
            if _text(cursor) == "0-0":
                break

    def _read_group(
        self, after: bytes, limit: int, end: bytes | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Up to `limit` entries, `read_count` a call: `>` new ones, an id re-reads pending."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        cursor = after
        end_line = entry_line(end) if end is not None else None
        while len(entries) < limit:
            count = min(self.read_count, limit - len(entries))
            reply = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: cursor}, count=count
            )
            got = reply[0][1] if reply else []
            entries.extend(got)
            if len(got) < count:
                break
            if cursor != b">":
                cursor = got[-1][0]
            elif end_line is not None and entry_line(got[-1][0]) >= end_line:
                break
        return entries

    def _batch(
        self, entries: list[tuple[bytes, dict[bytes, bytes]]], redelivered: bool
    ) -> LineBatch | None:
        """Entries as LINES_SCHEMA rows; deleted entries (no fields) are only acknowledged."""
        self._batch_ids = [entry[0] for entry in entries]
        present = [entry for entry in entries if entry[1]]
        if len(present) < len(entries):
            log.warning(
                "%d pending entries of stream %s were deleted before they were loaded",
                len(entries) - len(present),
                self.stream,
            )
        if not present:
            self.commit({})
            return None
        lines = [entry_line(entry[0]) for entry in present]
        raw = pa.array([_payload(entry[1]) for entry in present], pa.large_binary())
        table = lines_table(self.stream, lines, *decode_lines(raw.view(pa.large_string())))
        position = {STATE_STREAM_IDS: {self.stream: _text(present[-1][0])}}
        return LineBatch(table, position, redelivered=redelivered)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

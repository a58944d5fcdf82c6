"""Constants of the events source (stream segments of JSON lines)."""

from __future__ import annotations

SOURCE_NAME = "events"
RESOURCE_NAME = "events"
TABLE_NAME = "events"
INBOX_CONFIG_KEY = "sources.events.inbox"
SCHEMA_CONTRACT_CONFIG_KEY = "sources.events.schema_contract"

# Segments are files in the inbox matching this pattern, consumed in name order.
SEGMENT_GLOB = "*.jsonl"

# Fields every event carries; raw keeps them as text exactly as sent.
EVENT_FIELDS = ("event_id", "user_id", "category", "value", "occurred_at")
PRIMARY_KEY = "event_id"
# Re-sent events collapse on event_id; the first occurrence stays in raw.
EVENTS_WRITE_DISPOSITION = {"disposition": "merge", "strategy": "insert-only"}
# ... unless the resource itself dropped every event_id raw holds (LoadedEventIds):
# then the merge would insert every row anyway, after a second copy through staging.
EVENTS_CHECKED_WRITE_DISPOSITION = "append"

# Lineage columns added to every raw row.
SEGMENT_COLUMN = "_segment"
LINE_COLUMN = "_line"
LOADED_AT_COLUMN = "_loaded_at"

# Column hints for raw.events (extra keys found in the data are added as text).
EVENTS_COLUMNS = {
    **{name: {"data_type": "text", "nullable": name != PRIMARY_KEY} for name in EVENT_FIELDS},
    SEGMENT_COLUMN: {"data_type": "text", "nullable": False},
    LINE_COLUMN: {"data_type": "bigint", "nullable": False},
    LOADED_AT_COLUMN: {"data_type": "timestamp", "nullable": False},
}

# Resource state keys: the counts of the CLI summary.
STATE_SEGMENTS = "segments"  # {segment file name: complete lines consumed}
# {segment file name: byte offset after those lines}: a run skips segments that
# did not grow and seeks instead of re-reading; `segments` stays the position.
STATE_SEGMENT_BYTES = "segment_bytes"
STATE_LAST_RUN = "last_run"

# Lines parsed (and checked against the run's event_ids) at a time; each
# check scans the ids seen so far, so bigger batches mean fewer scans.
BATCH_LINES = 250_000
# Rows per yielded Arrow table.
YIELD_ROWS = 100_000
# Bytes read from a segment at a time: bounds memory for very large segments. Small
# on purpose: a read buffer above glibc's largest mmap threshold (32 MiB) is mapped
# and unmapped again on every read, so reading 10M events in 2020 segments took
# 3.5 s of CPU with 32 MiB blocks and 1.1 s with these.
READ_BLOCK_BYTES = 1024 * 1024
# Memory cap of the scratch DuckDB that parses lines and remembers this run's event_ids.
# Every batch probes all ids seen so far: 10M of them (~240 MB) stay in memory
# under 320MB, where 192MB made each probe read spilled blocks (10M events: -3 s).
SCRATCH_MEMORY_LIMIT = "320MB"

# Reasons a line goes to raw._rejected_rows instead of raw.events.
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_MALFORMED_JSON = "malformed_json"
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_MISSING_EVENT_ID = "missing_event_id"

SCHEMA_CONTRACTS = ("evolve", "freeze")

# --------------------------------------------------------------------------- backends
# `backend = "files"` reads segments from the inbox; "redis" reads a Redis Stream
# through a consumer group (sources.events.redis_url, stream, group, consumer).
BACKENDS = ("files", "redis")
BACKEND_CONFIG_KEY = "sources.events.backend"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STREAM = "events"
DEFAULT_GROUP = "warehouse"
DEFAULT_CONSUMER = "ingestion-1"
# A stream entry carries one event: the JSON line in this field. An entry
# without it is taken as the event itself (its field map, as a JSON object).
REDIS_DATA_FIELD = "data"
# Entries read per XREADGROUP call (bounded by what is left of --max-batch).
REDIS_READ_COUNT = 10_000
# Pending entries of other consumers idle this long are claimed (XAUTOCLAIM):
# a consumer that died between load and ack hands its entries over.
REDIS_CLAIM_IDLE_MS = 60_000
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

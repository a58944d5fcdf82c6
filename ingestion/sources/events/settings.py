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

# Resource state keys (SPEC.md "Reporting").
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
# Bytes read from a segment at a time: bounds memory for very large segments.
READ_BLOCK_BYTES = 32 * 1024 * 1024
# Memory cap of the scratch DuckDB that parses lines and remembers this run's event_ids.
SCRATCH_MEMORY_LIMIT = "192MB"

# Reasons a line goes to raw._rejected_rows instead of raw.events.
REASON_INVALID_UTF8 = "invalid_utf8"
REASON_MALFORMED_JSON = "malformed_json"
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_MISSING_EVENT_ID = "missing_event_id"

SCHEMA_CONTRACTS = ("evolve", "freeze")

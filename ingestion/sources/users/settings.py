"""Constants for the users CSV source."""

from __future__ import annotations

from typing import Any

SOURCE_NAME = "users"
RESOURCE_NAME = "users"
USERS_TABLE = "users"

# Every *.csv directly in the inbox is one snapshot export.
FILE_GLOB = "*.csv"

# The header the exports are expected to have; extra columns are reported as new.
EXPECTED_COLUMNS: tuple[str, ...] = (
    "user_id",
    "name",
    "email",
    "age",
    "country",
    "signup_at",
    "updated_at",
)

# Lineage columns added to every raw row.
FILE_COLUMN = "_source_file"
LINE_COLUMN = "_source_line"
ROW_KEY_COLUMN = "_row_key"
LOADED_AT_COLUMN = "_loaded_at"

# Column hints for raw.users: everything as sent is text; lineage is never null.
USERS_COLUMNS: dict[str, Any] = {
    **{name: {"data_type": "text", "nullable": True} for name in EXPECTED_COLUMNS},
    FILE_COLUMN: {"data_type": "text", "nullable": False},
    LINE_COLUMN: {"data_type": "bigint", "nullable": False},
    ROW_KEY_COLUMN: {"data_type": "text", "nullable": False},
    LOADED_AT_COLUMN: {"data_type": "timestamp", "nullable": False},
}

# Merge on `_row_key`. Keys are unique within one load (a file is read once per run
# and its lines are distinct), so dlt's per-load dedup window is skipped: it cost
# more than the rest of the load together.
USERS_WRITE_DISPOSITION: dict[str, Any] = {
    "disposition": "merge",
    "strategy": "delete-insert",
    "deduplicated": True,
}
# A load whose files have no row in raw.users yet (checked in the warehouse, not in
# state, so a lost state cannot duplicate) appends: no key can collide, and dlt's
# merge (staging copy, delete, insert) doubled the load time (1M rows: 3.1 s vs 6 s).
USERS_NEW_FILES_WRITE_DISPOSITION = "append"

# Rows per yielded Arrow table: large enough for dlt's Arrow path, small enough for memory.
CHUNK_ROWS = 100_000

# DuckDB parses an export whole before its rows are yielded; beyond this much memory
# it spills them to disk (in dlt's working folder), so a large export loads in
# bounded memory (11.8M rows, 1.2 GB: peak RSS 1.06 GB, not 3.0 GB, for 4% more
# time, with the file read rather than mapped; under ~3M rows it is never reached).
PARSE_MEMORY_LIMIT = "512MB"

# Resource state keys: the counts of the CLI summary.
STATE_FILES = "files"
STATE_LAST_RUN = "last_run"

# DuckDB's reject_errors.error_type -> our short reason codes in raw._rejected_rows.
REJECT_REASONS: dict[str, str] = {
    "TOO MANY COLUMNS": "wrong_field_count",
    "MISSING COLUMNS": "wrong_field_count",
    "INVALID ENCODING": "invalid_utf8",
    "UNQUOTED VALUE": "invalid_quoting",
    "LINE SIZE OVER MAXIMUM": "line_too_long",
    "INVALID STATE": "invalid_csv",
    "CAST": "cast_error",
}
# A whole file whose records we cannot line up with the CSV reader's rows.
FILE_REJECT_REASON = "unreadable_file"
# A whole file whose header has no KEY_COLUMN: not a users export. Other missing
# columns load as empty (a column that disappears from the export).
WRONG_HEADER_REASON = "wrong_header"
KEY_COLUMN = "user_id"

# `schema_contract` setting -> dlt schema contract. "freeze" still lets raw.users be
# created on the first load; after that a new column or a type change fails the load.
SCHEMA_CONTRACTS: dict[str, Any] = {
    "evolve": "evolve",
    "freeze": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
}

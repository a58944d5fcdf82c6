"""Constants for the products source (a table in any SQLAlchemy database)."""

from __future__ import annotations

from typing import Any

SOURCE_NAME = "products"
# The raw table and the dlt resource are always `products`, whatever the source table is called.
RESOURCE_NAME = "products"
PRIMARY_KEY = "product_id"
CURSOR_COLUMN = "updated_at"
LOADED_AT_COLUMN = "_loaded_at"

# Config keys, named in error messages so the user knows what to change.
CREDENTIALS_KEY = "sources.products.credentials"
TABLE_KEY = "sources.products.table"
SCHEMA_CONTRACT_KEY = "sources.products.schema_contract"

# A product catalogue is small: dicts through the sqlalchemy backend cost little, work on every
# dialect, and get dlt's `_dlt_load_id`/`_dlt_id` like the other raw tables (the Arrow path
# only adds them when the parquet normalizer is configured to).
BACKEND = "sqlalchemy"
CHUNK_SIZE = 50_000

# "freeze" lets the first run create raw.products but then fails any load that would add a
# column or change a type; "evolve" lets new source columns appear in raw.
SCHEMA_CONTRACTS: dict[str, Any] = {
    "evolve": "evolve",
    "freeze": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
}

# Run counts recorded in resource state for the CLI summary (the CLI summary).
LAST_RUN_KEY = "last_run"

"""Constants of the orders source: the API contract and the shape of raw.orders."""

from __future__ import annotations

from typing import Any

RESOURCE_NAME = "orders"
ENDPOINT = "orders"

# Query parameters and response fields of `GET /orders` (see demo/api.py).
UPDATED_SINCE_PARAM = "updated_since"
PAGE_PARAM = "page"
PAGE_SIZE_PARAM = "per_page"
DATA_PATH = "data"
NEXT_PAGE_PATH = "next_page"
FIRST_PAGE = 1
# A bound on one run's pages (1000 orders each at most): a server that never ends paging fails.
MAX_PAGES = 100_000
MAX_PAGE_SIZE = 1000

CURSOR_COLUMN = "updated_at"
PRIMARY_KEY = "order_id"
# Before any order can exist: the first run asks for everything.
INITIAL_UPDATED_AT = "1970-01-01T00:00:00Z"

LOADED_AT_COLUMN = "_loaded_at"

# The fields of raw.orders and their types; fields the API adds later evolve into raw.
COLUMNS: dict[str, Any] = {
    "order_id": {"data_type": "bigint", "nullable": False},
    "user_id": {"data_type": "bigint", "nullable": True},
    "product_id": {"data_type": "bigint", "nullable": True},
    "amount": {"data_type": "double", "nullable": True},
    "currency": {"data_type": "text", "nullable": True},
    "status": {"data_type": "text", "nullable": True},
    "created_at": {"data_type": "timestamp", "nullable": True},
    # dedup_sort: if one run sees an order twice, merge keeps the newest version.
    "updated_at": {"data_type": "timestamp", "nullable": False, "dedup_sort": "desc"},
    LOADED_AT_COLUMN: {"data_type": "timestamp", "nullable": False},
}

# `schema_contract` setting -> dlt schema contract. "freeze" still lets raw.orders be
# created on the first load; after that a new field or a type change fails the load.
SCHEMA_CONTRACTS: dict[str, Any] = {
    "evolve": "evolve",
    "freeze": {"tables": "evolve", "columns": "freeze", "data_type": "freeze"},
}

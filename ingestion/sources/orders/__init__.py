"""Orders from the REST API into raw.orders: incremental on updated_at, merged on order_id.

Each run asks for orders with `updated_since` = the cursor saved by the last
successful load (inclusive; dlt drops the boundary rows it already has). A run
that fails after its retries commits nothing, so the cursor stays where it was
and the next run picks up from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from . import settings
from .helpers import CountRowsRead, contract_for, iter_pages, make_client, orders_rows


@dlt.source(name="orders")
def orders_source(
    base_url: str = dlt.config.value,
    api_token: str = dlt.secrets.value,
    page_size: int = dlt.config.value,
    schema_contract: str = dlt.config.value,
    request_timeout: float | None = None,
    request_max_attempts: int | None = None,
    request_backoff_factor: float | None = None,
    request_max_retry_delay: float | None = None,
    initial_updated_at: str = settings.INITIAL_UPDATED_AT,
) -> DltResource:
    """The orders API as one dlt source (config from `[sources.orders]`).

    `schema_contract` is "evolve" or "freeze". Retry settings left unset fall
    back to dlt's `[runtime]` request settings.
    """
    contract = contract_for(schema_contract)
    resource = orders(
        base_url,
        api_token,
        page_size,
        request_timeout=request_timeout,
        request_max_attempts=request_max_attempts,
        request_backoff_factor=request_backoff_factor,
        request_max_retry_delay=request_max_retry_delay,
        frozen=schema_contract == "freeze",
        updated_at=dlt.sources.incremental(
            settings.CURSOR_COLUMN,
            initial_value=datetime.fromisoformat(initial_updated_at).astimezone(UTC),
        ),
    )
    return resource.add_step(CountRowsRead()).apply_hints(schema_contract=contract)


@dlt.resource(
    name=settings.RESOURCE_NAME,
    primary_key=settings.PRIMARY_KEY,
    write_disposition="merge",
    columns=settings.COLUMNS,
)
def orders(
    base_url: str,
    api_token: str,
    page_size: int,
    request_timeout: float | None = None,
    request_max_attempts: int | None = None,
    request_backoff_factor: float | None = None,
    request_max_retry_delay: float | None = None,
    frozen: bool = False,
    # dlt's idiom: the incremental default is copied per run, never shared.
    updated_at: dlt.sources.incremental[datetime] = dlt.sources.incremental(  # noqa: B008
        settings.CURSOR_COLUMN,
        initial_value=datetime.fromisoformat(settings.INITIAL_UPDATED_AT),  # noqa: B008
    ),
) -> Iterator[list[dict[str, Any]]]:
    """Pages of orders updated since the cursor, stamped with `_loaded_at`."""
    dlt.current.resource_state()["last_run"] = {
        "rows_read": 0,
        "rows_rejected": 0,
        "rows_collapsed": 0,
    }
    client = make_client(
        base_url,
        api_token,
        request_timeout=request_timeout,
        request_max_attempts=request_max_attempts,
        request_backoff_factor=request_backoff_factor,
        request_max_retry_delay=request_max_retry_delay,
    )
    loaded_at = datetime.now(UTC)
    for rows in iter_pages(client, updated_at.start_value, page_size, api_token):
        if rows:
            yield orders_rows(rows, loaded_at, frozen)

"""HTTP and Arrow plumbing for the orders source.

Retries come from dlt's requests `Client`: 429 and 5xx responses, connection
errors and timeouts are retried with exponential backoff (`backoff_factor *
2 ** (attempt - 1)` seconds, capped by `max_retry_delay`), and a `Retry-After`
header replaces the backoff for that wait. Settings left as None fall back to
dlt's `[runtime]` values (`RUNTIME__REQUEST_BACKOFF_FACTOR`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import dlt
import pyarrow as pa
from dlt.extract.items_transform import MapItem
from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from requests import HTTPError, RequestException

from . import settings


class OrdersApiError(RuntimeError):
    """The orders API could not be read. The message is safe to show: it never holds the token."""


def make_client(
    base_url: str,
    api_token: str,
    *,
    request_timeout: float | None = None,
    request_max_attempts: int | None = None,
    request_backoff_factor: float | None = None,
    request_max_retry_delay: float | None = None,
) -> RESTClient:
    """A REST client for the orders API: bearer auth, `next_page` paging, retrying session."""
    if not api_token:
        raise OrdersApiError(
            "no token for the orders API: set SOURCES__ORDERS__API_TOKEN "
            "or api_token under [sources.orders] in .dlt/secrets.toml"
        )
    retry = {
        "request_timeout": request_timeout,
        "request_max_attempts": request_max_attempts,
        "request_backoff_factor": request_backoff_factor,
        "request_max_retry_delay": request_max_retry_delay,
    }
    # raise_for_status=False: RESTClient raises through its response hook, inside the retry.
    session = Client(
        raise_for_status=False, **{k: v for k, v in retry.items() if v is not None}
    ).session
    return RESTClient(
        base_url=base_url,
        auth=BearerTokenAuth(token=api_token),
        paginator=JSONResponseCursorPaginator(
            cursor_path=settings.NEXT_PAGE_PATH, cursor_param=settings.PAGE_PARAM
        ),
        data_selector=settings.DATA_PATH,
        session=session,
    )


def contract_for(setting: str) -> Any:
    """The dlt schema contract for the `sources.orders.schema_contract` setting."""
    try:
        return settings.SCHEMA_CONTRACTS[setting]
    except KeyError:
        choices = ", ".join(f'"{k}"' for k in settings.SCHEMA_CONTRACTS)
        raise ValueError(
            f"sources.orders.schema_contract is {setting!r}; expected one of {choices}"
        ) from None


def iso_z(value: datetime) -> str:
    """A UTC ISO 8601 timestamp ending in `Z`, the form the API documents."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iter_pages(
    client: RESTClient, updated_since: datetime, page_size: int, api_token: str
) -> Iterator[list[dict[str, Any]]]:
    """Every page of orders updated at or after `updated_since`, in the API's order.

    Failures that outlast the retries end in one `OrdersApiError` naming the
    URL and the cause, with the token redacted in case a server echoed it.
    """
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise OrdersApiError(
            f"page_size must be between 1 and {settings.MAX_PAGE_SIZE}, got {page_size}"
        )
    params = {
        settings.UPDATED_SINCE_PARAM: iso_z(updated_since),
        settings.PAGE_PARAM: settings.FIRST_PAGE,
        settings.PAGE_SIZE_PARAM: page_size,
    }
    url = sanitize_url(f"{client.base_url.rstrip('/')}/{settings.ENDPOINT}")
    try:
        for page in client.paginate(settings.ENDPOINT, params=params):
            yield list(page)
    except HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = (
            "check the api_token (SOURCES__ORDERS__API_TOKEN)"
            if status in (401, 403)
            else "the API kept failing after retries; run again when it has recovered"
        )
        raise OrdersApiError(
            _redact(f"orders API {url} answered HTTP {status}: {exc}; {hint}", api_token)
        ) from exc
    except RequestException as exc:
        raise OrdersApiError(
            _redact(
                f"orders API {url} unreachable after retries ({type(exc).__name__}: {exc}); "
                "check base_url under [sources.orders] and that the API is running",
                api_token,
            )
        ) from exc


def orders_table(rows: list[dict[str, Any]], loaded_at: datetime) -> pa.Table:
    """One page of orders as an Arrow table typed like raw.orders, plus `_loaded_at`.

    ISO 8601 strings (`Z` or `+00:00`) become UTC timestamps; fields the API adds
    later are kept with inferred types so schema evolution can report them.
    """
    fields: list[pa.Field] = []
    arrays: list[pa.Array] = []
    for name, arrow_type in settings.ARROW_FIELDS.items():
        values = [row.get(name) for row in rows]
        try:
            if pa.types.is_timestamp(arrow_type):
                array = pa.array(values, type=pa.string()).cast(arrow_type)
            else:
                array = pa.array(values, type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise OrdersApiError(
                f"orders API sent a {name} that is not {arrow_type}: {exc}"
            ) from exc
        nullable = settings.COLUMNS[name]["nullable"]
        if not nullable and array.null_count:
            raise OrdersApiError(f"orders API sent {array.null_count} order(s) without {name}")
        fields.append(pa.field(name, arrow_type, nullable=nullable))
        arrays.append(array)
    for name in sorted({key for row in rows for key in row} - set(settings.ARROW_FIELDS)):
        array = pa.array([row.get(name) for row in rows])
        fields.append(pa.field(name, array.type))
        arrays.append(array)
    fields.append(pa.field(settings.LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC"), False))
    arrays.append(pa.array([loaded_at] * len(rows), type=pa.timestamp("us", tz="UTC")))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def record_rows_read(item: Any) -> Any:
    """Add the rows of one item to `last_run.rows_read` and pass the item on."""
    rows = item.num_rows if isinstance(item, pa.Table | pa.RecordBatch) else 1
    state = dlt.current.resource_state(settings.RESOURCE_NAME)
    state["last_run"]["rows_read"] += rows
    return item


class CountRowsRead(MapItem):
    """`record_rows_read` as a pipe step that runs after the incremental filter.

    Rows dlt drops at the cursor boundary (already loaded last run) are not "read".
    A plain `add_map` would land before the incremental step, which dlt re-appends
    when it clones the resource into the source; placement affinity 1.05 (the
    incremental step has 1, `add_limit` 1.1) keeps this step behind it.
    """

    placement_affinity: ClassVar[float] = 1.05

    def __init__(self) -> None:
        super().__init__(record_rows_read)


def _redact(message: str, secret: str) -> str:
    return message.replace(secret, "***") if secret else message

"""HTTP and Arrow plumbing for the orders source.

Retries come from dlt's requests `Client`: 429 and 5xx responses, connection
errors and timeouts are retried with exponential backoff (`backoff_factor *
2 ** (attempt - 1)` seconds, capped by `max_retry_delay`), and a `Retry-After`
header replaces the backoff for that wait. Settings left as None fall back to
dlt's `[runtime]` values (`RUNTIME__REQUEST_BACKOFF_FACTOR`, ...).
"""

from __future__ import annotations

import json
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
from requests import HTTPError, RequestException, Response
from requests.exceptions import JSONDecodeError

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
    # A 200 whose body is not JSON (a proxy's HTML page, a body cut short) is retried too.
    session = Client(
        raise_for_status=False,
        retry_condition=not_json,
        **{k: v for k, v in retry.items() if v is not None},
    ).session
    return RESTClient(
        base_url=base_url,
        auth=BearerTokenAuth(token=api_token),
        paginator=PagesPaginator(),
        data_selector=settings.DATA_PATH,
        session=session,
    )


def not_json(response: Response | None, exc: BaseException | None) -> bool:
    """Retry condition: a successful answer whose body is not a JSON object."""
    if response is None or not response.ok:
        return False
    try:
        return not isinstance(json.loads(response.content), dict)
    except ValueError:
        return True


class PagesPaginator(JSONResponseCursorPaginator):
    """`next_page` paging that refuses a page it has already read: a loop would never end."""

    def __init__(self) -> None:
        super().__init__(cursor_path=settings.NEXT_PAGE_PATH, cursor_param=settings.PAGE_PARAM)
        self.pages_read = [settings.FIRST_PAGE]

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        page = self._next_reference
        if page is None:
            return
        if page in self.pages_read or str(page) in map(str, self.pages_read):
            raise OrdersApiError(
                f"orders API paging loops: after page {self.pages_read[-1]} it sent "
                f"next_page={page!r}, a page already read; stopped after "
                f"{len(self.pages_read)} pages, nothing loaded"
            )
        if len(self.pages_read) >= settings.MAX_PAGES:
            raise OrdersApiError(
                f"orders API sent more than {settings.MAX_PAGES} pages; stopped, nothing loaded"
            )
        self.pages_read.append(page)


def contract_for(setting: str) -> Any:
    """The dlt schema contract for the `sources.orders.schema_contract` setting."""
    try:
        return settings.SCHEMA_CONTRACTS[setting]
    except KeyError:
        choices = ", ".join(f'"{k}"' for k in settings.SCHEMA_CONTRACTS)
        raise ValueError(
            f"sources.orders.schema_contract is {setting!r}; expected one of {choices}"
        ) from None


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp from the API as an aware UTC datetime (naive means UTC)."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


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
    except JSONDecodeError as exc:  # still not JSON after the retries (not_json)
        raise OrdersApiError(
            _redact(
                f"orders API {url} kept answering with a body that is not JSON "
                f"({type(exc).__name__}: {str(exc)[:120]}); "
                "check base_url under [sources.orders] (a proxy or login page?)",
                api_token,
            )
        ) from exc
    except RequestException as exc:
        raise OrdersApiError(
            _redact(
                f"orders API {url} unreachable after retries ({type(exc).__name__}: {exc}); "
                "check base_url under [sources.orders] and that the API is running",
                api_token,
            )
        ) from exc


def check_frozen(row: dict[str, Any]) -> None:
    """Refuse, before anything is extracted, an order that a frozen schema cannot take.

    dlt checks a contract on dict rows only when it normalizes them, after the
    cursor has moved, and then keeps retrying the refused package; checking here
    fails the run with nothing extracted and the cursor where it was.
    """
    for name, value in row.items():
        column = settings.COLUMNS.get(name)
        if column is None:
            raise OrdersApiError(
                f"orders API sent a new field {name!r} and sources.orders.schema_contract "
                'is "freeze": add the column or set it to "evolve"'
            )
        if value is None or _fits(value, column["data_type"]):
            continue
        raise OrdersApiError(
            f"orders API sent {name}={value!r}, not a {column['data_type']}, and "
            'sources.orders.schema_contract is "freeze"'
        )


def _fits(value: Any, data_type: str) -> bool:
    if data_type == "bigint":
        return isinstance(value, int) and not isinstance(value, bool)
    if data_type == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if data_type == "timestamp":
        try:
            parse_timestamp(value)
        except (TypeError, ValueError):
            return False
        return True
    return isinstance(value, str)


def orders_rows(
    rows: list[dict[str, Any]], loaded_at: datetime, frozen: bool = False
) -> list[dict[str, Any]]:
    """One page of orders as dicts stamped with `_loaded_at`, the cursor parsed.

    Dicts, not Arrow: dlt coerces each value to the declared column type and puts
    a value that doesn't fit (say an `amount` of "n/a") in a variant column
    (`amount__v_text`) instead of failing the load, and reports the new column.
    Pages are small, so the per-row cost is fine. Only the key and the cursor
    must be well-formed: without them an order can be neither merged nor tracked.
    """
    page = []
    for row in rows:
        if frozen:
            check_frozen(row)
        order_id, updated_at = row.get(settings.PRIMARY_KEY), row.get(settings.CURSOR_COLUMN)
        if order_id is None or updated_at is None:
            raise OrdersApiError(
                f"orders API sent an order without {settings.PRIMARY_KEY} or "
                f"{settings.CURSOR_COLUMN}: {json.dumps(row)[:200]}"
            )
        try:
            cursor = parse_timestamp(updated_at)
        except (TypeError, ValueError) as exc:
            raise OrdersApiError(
                f"orders API sent order {order_id} with an unreadable "
                f"{settings.CURSOR_COLUMN} {updated_at!r}"
            ) from exc
        page.append({**row, settings.CURSOR_COLUMN: cursor, settings.LOADED_AT_COLUMN: loaded_at})
    return page


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

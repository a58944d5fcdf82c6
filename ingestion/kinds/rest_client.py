"""HTTP for the `rest_api` kind: dlt's REST client with bounded retries and bounded paging.

Retries come from dlt's requests `Client`: 429 and 5xx responses, connection
errors and timeouts are retried with exponential backoff (`backoff_factor *
2 ** (attempt - 1)` seconds, capped by `max_retry_delay`), and a `Retry-After`
header replaces the backoff for that wait. A 200 whose body is not JSON (a
proxy's HTML page, a body cut short) is retried too. Settings left as None fall
back to dlt's `[runtime]` values (`RUNTIME__REQUEST_BACKOFF_FACTOR`, ...).
Paginators are dlt's, built from dlt's rest_api config; each is wrapped so that
a server sending a page already read, or pages without end, fails the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dlt.sources.helpers.requests import Client
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import (
    APIKeyAuth,
    BearerTokenAuth,
    HttpBasicAuth,
    OAuth2ClientCredentials,
)
from dlt.sources.helpers.rest_client.paginators import BasePaginator
from dlt.sources.helpers.rest_client.redaction import sanitize_url
from dlt.sources.rest_api.config_setup import create_paginator
from requests import HTTPError, Request, RequestException, Response
from requests.exceptions import JSONDecodeError

from .common import SourceConfigError, check_keys, option

# A bound on one run's pages per endpoint: a server that never ends paging fails.
MAX_PAGES = 100_000


class ApiError(RuntimeError):
    """The API could not be read. The message is safe to show: it never holds the token."""


@dataclass(frozen=True)
class Secrets:
    """A rest_api source's secrets, each from env or .dlt/secrets.toml."""

    api_token: str | None = None
    api_key: str | None = None
    password: str | None = None
    client_secret: str | None = None

    def values(self) -> list[str]:
        return [v for v in (self.api_token, self.api_key, self.password, self.client_secret) if v]


# auth type -> (its options besides `type`, the secret it needs): dlt's auth classes.
AUTH_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "bearer": ((), "api_token"),
    "api_key": (("name", "location"), "api_key"),
    "http_basic": (("username",), "password"),
    "oauth2_client_credentials": (
        ("access_token_url", "client_id", "access_token_request_data"),
        "client_secret",
    ),
}


def make_auth(source: str, auth: Any, secrets: Secrets, check_only: bool = False) -> Any:
    """dlt's auth object for `auth`: "bearer", or a table with `type` (bearer, api_key,
    http_basic, oauth2_client_credentials) and that type's options. The secret itself
    (api_token, api_key, password, client_secret) is a source option read from env or
    .dlt/secrets.toml; a missing one fails the run naming where to set it."""
    if auth is None:
        return None
    config = {"type": auth} if isinstance(auth, str) else auth
    kind = config.get("type") if isinstance(config, dict) else None
    if kind not in AUTH_TYPES:
        raise SourceConfigError(
            f"{option(source, 'auth')} is {auth!r}; expected one of "
            f'{", ".join(AUTH_TYPES)} (a name, or a table with type = "...")'
        )
    allowed, secret = AUTH_TYPES[kind]
    check_keys(source, "auth", config, ("type", *allowed))
    if kind == "oauth2_client_credentials":
        for required in ("access_token_url", "client_id"):
            if not config.get(required):
                raise SourceConfigError(f"sources.{source}.auth.{required} is required for {kind}")
    if kind == "http_basic" and not config.get("username"):
        raise SourceConfigError(f"sources.{source}.auth.username is required for {kind}")
    if kind == "api_key" and config.get("location", "header") not in ("header", "query"):
        raise SourceConfigError(f'sources.{source}.auth.location is "header" or "query"')
    if check_only:
        return None
    value = getattr(secrets, secret)
    if not value:
        raise ApiError(
            f"no {secret} for the {source} API: set SOURCES__{source.upper()}__{secret.upper()} "
            f"or {secret} under [sources.{source}] in .dlt/secrets.toml"
        )
    options = {k: v for k, v in config.items() if k != "type"}
    if kind == "bearer":
        return BearerTokenAuth(token=value)
    if kind == "api_key":
        return APIKeyAuth(
            name=options.get("name", "Authorization"),
            api_key=value,
            location=options.get("location", "header"),
        )
    if kind == "http_basic":
        return HttpBasicAuth(username=options["username"], password=value)
    return OAuth2ClientCredentials(client_secret=value, **options)


def make_client(source: str, base_url: str, auth: Any, retry: dict[str, Any]) -> RESTClient:
    """A REST client for the source: its auth and a retrying session."""
    # raise_for_status=False: RESTClient raises through its response hook, inside the retry.
    session = Client(
        raise_for_status=False,
        retry_condition=not_json,
        **{k: v for k, v in retry.items() if v is not None},
    ).session
    if isinstance(auth, OAuth2ClientCredentials):
        auth.session = session  # the token request is retried like the others
    return RESTClient(base_url=base_url, auth=auth, session=session)


def _credentials_hint(source: str, auth: Any) -> str:
    """What to check when the API refuses the credentials (or asks for some)."""
    kind = auth if isinstance(auth, str) else (auth or {}).get("type")
    if kind not in AUTH_TYPES:
        return f"the API wants credentials: set sources.{source}.auth (docs/sources.md)"
    secret = AUTH_TYPES[kind][1]
    return f"check the {secret} (SOURCES__{source.upper()}__{secret.upper()})"


def not_json(response: Response | None, exc: BaseException | None) -> bool:
    """Retry condition: a successful answer whose body is not JSON."""
    if response is None or not response.ok:
        return False
    try:
        json.loads(response.content)
    except ValueError:
        return True
    return False


class BoundedPaginator(BasePaginator):
    """Any dlt paginator, refusing a request it already sent (a loop would never end)."""

    def __init__(self, inner: BasePaginator, source: str, max_pages: int = MAX_PAGES) -> None:
        super().__init__()
        self.inner, self.source, self.max_pages = inner, source, max_pages
        self.sent: list[str] = []

    @staticmethod
    def _identity(request: Request) -> str:
        params = sorted((str(k), str(v)) for k, v in (request.params or {}).items())
        return json.dumps([request.url, params, request.json], default=str)

    def init_request(self, request: Request) -> None:
        self.inner.init_request(request)
        self.sent.append(self._identity(request))

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        self.inner.update_state(response, data)

    def update_request(self, request: Request) -> None:
        self.inner.update_request(request)
        if not self.inner.has_next_page:
            return
        identity = self._identity(request)
        if identity in self.sent:
            raise ApiError(
                f"{self.source} API paging loops: after {len(self.sent)} pages it pointed "
                f"back to a page already read; stopped, nothing loaded"
            )
        if len(self.sent) >= self.max_pages:
            raise ApiError(
                f"{self.source} API sent more than {self.max_pages} pages; stopped, nothing loaded"
            )
        self.sent.append(identity)

    @property
    def has_next_page(self) -> bool:
        return self.inner.has_next_page


def paginator_for(source: str, config: Any) -> BoundedPaginator:
    """dlt's paginator from its rest_api config (a name or a table), bounded."""
    try:
        inner = create_paginator(config)
    except Exception as error:  # noqa: BLE001 - dlt raises several kinds for a bad config
        raise SourceConfigError(
            f"sources.{source}: paginator {config!r} is not a dlt rest_api paginator ({error})"
        ) from None
    if inner is None:
        raise SourceConfigError(f"sources.{source}: set a paginator for each resource")
    return BoundedPaginator(inner, source)


def iter_pages(
    source: str,
    client: RESTClient,
    path: str,
    params: dict[str, Any],
    paginator: BasePaginator,
    data_selector: str | None,
    secrets: list[str],
    auth: Any = None,
) -> Iterator[list[Any]]:
    """Every page of the endpoint, in the API's order.

    Failures that outlast the retries end in one `ApiError` naming the URL and
    the cause, with the token redacted in case a server echoed it.
    """
    url = sanitize_url(f"{client.base_url.rstrip('/')}/{path.lstrip('/')}")
    where = f"check base_url under [sources.{source}]"
    try:
        for page in client.paginate(
            path, params=params, paginator=paginator, data_selector=data_selector
        ):
            yield list(page)
    except RequestException as exc:
        if isinstance(exc, HTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            what = f"answered HTTP {status}: {exc}; " + (
                _credentials_hint(source, auth)
                if status in (401, 403)
                else "the API kept failing after retries; run again when it has recovered"
            )
        elif isinstance(exc, JSONDecodeError):  # still not JSON after the retries (not_json)
            what = (
                f"kept answering with a body that is not JSON ({type(exc).__name__}: "
                f"{str(exc)[:120]}); {where} (a proxy or login page?)"
            )
        else:
            what = (
                f"unreachable after retries ({type(exc).__name__}: {exc}); "
                f"{where} and that the API is running"
            )
        message = f"{source} API {url} {what}"
        for secret in secrets:  # in case a server echoed one
            message = message.replace(secret, "***")
        raise ApiError(message) from exc

"""Whether a `rest_api` source's API holds anything its last load did not read, asked without
dlt (ingestion/unchanged.py), so a run with nothing new imports no dlt and starts no pipeline.

Each endpoint's last load saves, in its resource state, the cursor it reached and the
digests of the records it read at that cursor (`seen`) and of those it rejected. The
source's record keeps them (`settled`); the next run asks each endpoint once, from that
cursor, as the load would (`answer`). Nothing is new when every record of every answer is
one of those, on a page with no next one. Anything else runs the source as always: a new
or changed record, a next page, an error or a timeout.

Probed only where the answer means the same as to dlt's REST client: every endpoint has
an `incremental` cursor sent as its `start_param`, a `data_selector` that is a dotted path
(or none, for an answer that is a list), a paginator whose last page shows in the answer
(`cursor`, `json_link`, `header_link`, `single_page`), no auth or bearer, api_key or
http_basic auth whose secret is where this module looks for it (env
`SOURCES__<NAME>__<SECRET>`, else the project's .dlt/secrets.toml) and is the one dlt
resolved, and a base URL without credentials or a query string (the record keeps it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from warehouse.sources import config_file

STATE_CURSOR = "cursor"
STATE_SEEN = "seen"  # digests of every record read at the cursor's value, loaded or not
# Digests of the records rejected so far: an API sends a record it cannot filter by the
# cursor (it has none) on every run; it is kept once in raw._rejected_rows, not each time.
STATE_REJECTED = "rejected"
SECRET_OF_AUTH = {"bearer": "api_token", "api_key": "api_key", "http_basic": "password"}
# paginator type -> (its option naming where the next page shows, that option's default)
LAST_PAGE_SHOWN = {
    "cursor": ("cursor_path", "cursors.next"),
    "json_link": ("next_url_path", "next"),
    "json_response": ("next_url_path", "next"),
    "header_link": ("links_next_key", "next"),
    "single_page": (None, None),
}
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
PROBE_TIMEOUT = 10.0  # seconds; an API slower than this is asked by the load itself


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


def record_digest(record: Any) -> str:
    """The digest of a record as sent (a rejected one is known by it)."""
    return digest(json.dumps(record, default=str, sort_keys=True))


def sortable(value: Any) -> tuple[int, Any] | None:
    """A cursor value made comparable: numbers as numbers, timestamps in UTC, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (1, parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed)
    return None


def compare(a: Any, b: Any) -> int:
    left, right = sortable(a), sortable(b)
    if left is None or right is None or left[0] != right[0]:
        return 1  # not comparable (say, a changed initial_value): treat as new
    return (left[1] > right[1]) - (left[1] < right[1])


def secret(source: str, name: str) -> str | None:
    """A secret option where the probe looks: env, then the project's .dlt/secrets.toml."""
    value = os.environ.get(f"SOURCES__{source.upper()}__{name.upper()}")
    if value:
        return value
    path = config_file().with_name("secrets.toml")
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8"))["sources"][source][name]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def plan(source: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """How to ask the source's endpoints without dlt, from its resolved options (secrets
    included, none kept); None when one of them cannot be asked so (see the module's doc)."""
    base_url = str(options.get("base_url") or "")
    parts = urlsplit(base_url)
    if not parts.scheme or parts.username or parts.password or parts.query or parts.fragment:
        return None
    auth = options.get("auth")
    auth = {"type": auth} if isinstance(auth, str) else auth
    if auth is not None:
        kind = auth.get("type") if isinstance(auth, dict) else None
        name = SECRET_OF_AUTH.get(kind)
        if name is None or not options.get(name) or secret(source, name) != options[name]:
            return None
    resources = []
    for config in options.get("resources") or []:
        endpoint = config.get("endpoint", {}) if isinstance(config, dict) else None
        endpoint = {"path": endpoint} if isinstance(endpoint, str) else endpoint
        if not isinstance(endpoint, dict) or "name" not in config:
            return None  # not a resource the kind can read: it says so when the source runs
        incremental = endpoint.get("incremental") or {}
        selector = endpoint.get("data_selector")
        paginator = _last_page_rule(endpoint.get("paginator", options.get("paginator")))
        if not isinstance(incremental, dict) or not isinstance(endpoint.get("params", {}), dict):
            return None
        if not (incremental.get("cursor_path") and incremental.get("start_param")):
            return None
        if paginator is None or (selector is not None and not DOTTED.fullmatch(str(selector))):
            return None
        resources.append(
            {
                "table": str(config.get("table", config["name"])),
                "path": str(endpoint.get("path", config["name"])),
                "params": dict(endpoint.get("params", {})),
                "data_selector": selector,
                "start_param": incremental["start_param"],
                "initial_value": incremental.get("initial_value"),
                "paginator": paginator,
            }
        )
    if not resources:
        return None
    return {"source": source, "base_url": base_url, "auth": auth, "resources": resources}


def _last_page_rule(config: Any) -> list[Any] | None:
    """[type, where the next page shows] of a paginator the probe can follow, else None."""
    config = {"type": config} if isinstance(config, str) else config
    if not isinstance(config, dict) or config.get("type") not in LAST_PAGE_SHOWN:
        return None
    option, default = LAST_PAGE_SHOWN[config["type"]]
    where = config.get(option, default) if option else None
    if where is not None and not DOTTED.fullmatch(str(where)):
        return None
    return [config["type"], where]


def settled(probe: dict[str, Any], source_state: dict[str, Any]) -> dict[str, Any]:
    """The plan with each endpoint's cursor and known records, as its load left them."""
    resources = []
    for resource in probe["resources"]:
        state = source_state.get("resources", {}).get(resource["table"], {})
        known = set(state.get(STATE_SEEN, [])) | set(state.get(STATE_REJECTED, []))
        cursor = state.get(STATE_CURSOR, resource["initial_value"])
        resources.append({**resource, "cursor": cursor, "known": sorted(known)})
    return {**probe, "resources": resources}


def answer(probe: dict[str, Any]) -> bool:
    """True when no endpoint holds a record its last load did not read (see the module's
    doc); False on anything else, failures included: the source then runs."""
    import requests

    headers, auth, query = {}, None, {}
    config = probe.get("auth")
    if config:
        value = secret(probe["source"], SECRET_OF_AUTH[config["type"]])
        if not value:
            return False
        if config["type"] == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif config["type"] == "http_basic":
            auth = (config["username"], value)
        elif config.get("location", "header") == "query":
            query[config.get("name", "Authorization")] = value
        else:
            headers[config.get("name", "Authorization")] = value
    try:
        with requests.Session() as session:
            for resource in probe["resources"]:
                if "known" not in resource:
                    return False
                params = {**resource["params"], **query}
                if resource["cursor"] is not None:
                    params[resource["start_param"]] = resource["cursor"]
                url = f"{probe['base_url'].rstrip('/')}/{resource['path'].lstrip('/')}"
                response = session.get(
                    url, params=params, headers=headers, auth=auth, timeout=PROBE_TIMEOUT
                )
                if response.status_code != 200 or _next_page(response, resource["paginator"]):
                    return False
                records = _select(response.json(), resource["data_selector"])
                known = set(resource["known"])
                if records is None or any(record_digest(r) not in known for r in records):
                    return False
    except Exception:  # noqa: BLE001 - any failure: the source runs and says what it is
        return False
    return True


def _path(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def _select(body: Any, selector: str | None) -> list[Any] | None:
    data = body if selector is None else _path(body, selector)
    return data if isinstance(data, list) else None


def _next_page(response: Any, rule: list[Any]) -> bool:
    """Whether dlt's paginator of `rule` would ask for another page after `response`."""
    kind, where = rule
    if kind == "single_page":
        return False
    if kind == "header_link":
        return response.links.get(where, {}).get("url") is not None
    value = _path(response.json(), where)
    return bool(value) if kind == "cursor" else value is not None  # as dlt's paginators

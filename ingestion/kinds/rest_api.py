"""The `rest_api` kind: endpoints of a JSON API, each into its own raw table, merged on its key.

The configuration follows dlt's declarative `rest_api` source: `resources` with
`name`, `primary_key` and an `endpoint` (`path`, `params`, `data_selector`,
`paginator`, `incremental` with `cursor_path`, `start_param`, `initial_value`);
`base_url`, `auth` and a default `paginator` sit on the source itself.

Each run asks for records at or after the cursor saved by the last successful
load (the cursor is resource state, committed with the load: a failed run keeps
it where it was). Records at the cursor that were loaded last time are not read
again. A record without its key or cursor cannot be merged or tracked: it goes
to raw._rejected_rows with the page it came on (once: not again when re-sent); the
others load.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

import dlt

from ingestion import api_probe
from ingestion.api_probe import STATE_CURSOR, STATE_REJECTED, STATE_SEEN, compare, record_digest
from ingestion.rejected import data_rows, rejected_rows

from .common import (
    DIGEST_COLUMN,
    LOADED_AT_COLUMN,
    Flag,
    RawTable,
    SourceConfigError,
    UnchangedRows,
    check_keys,
    check_stored_name,
    colliding_field,
    declared_key,
    make_source,
    option,
    raw_column_name,
    source_timezone,
    start_run,
)
from .rest_client import ApiError, Secrets, iter_pages, make_auth, make_client, paginator_for

RESOURCE_OPTIONS = ("name", "table", "primary_key", "endpoint", "columns")
ENDPOINT_OPTIONS = ("path", "params", "data_selector", "paginator", "incremental")
INCREMENTAL_OPTIONS = ("cursor_path", "start_param", "initial_value")
DATA_TYPES = ("text", "bigint", "double", "bool", "timestamp", "date", "decimal", "json")
STATE_AT_CURSOR = "at_cursor"  # digests of the keys loaded with the cursor's value

# Options that hold a secret: read from env or .dlt/secrets.toml, refused in config.toml.
SECRET_OPTIONS: tuple[str, ...] = ("api_token", "api_key", "password", "client_secret")


def rest_api_source(
    name: str,
    base_url: str,
    resources: list[dict[str, Any]],
    api_token: str | None = None,
    auth: str | dict[str, Any] | None = None,
    api_key: str | None = None,
    password: str | None = None,
    client_secret: str | None = None,
    paginator: Any = None,
    schema_contract: str = "evolve",
    request_timeout: float | None = None,
    request_max_attempts: int | None = None,
    request_backoff_factor: float | None = None,
    request_max_retry_delay: float | None = None,
    ask_every: str | float | None = None,
) -> Any:
    """The API at `base_url` as the dlt source `name`, one raw table per resource.

    `ask_every` ("15m", "2h", seconds) is read before dlt starts (`probe`)."""
    if not resources:
        raise SourceConfigError(f"{option(name, 'resources')}: declare at least one endpoint")
    ask_every_seconds(name, ask_every)  # a bad one fails before anything is asked
    retry = {
        "request_timeout": request_timeout,
        "request_max_attempts": request_max_attempts,
        "request_backoff_factor": request_backoff_factor,
        "request_max_retry_delay": request_max_retry_delay,
    }
    secrets = Secrets(api_token, api_key, password, client_secret)
    make_auth(name, auth, secrets, check_only=True)  # a bad auth table fails before a run
    zone = zoneinfo.ZoneInfo(source_timezone(name))
    endpoints = [Endpoint(name, r, paginator, zone) for r in resources]
    frozen = schema_contract == "freeze"

    def resource(endpoint: Endpoint) -> Any:
        @dlt.resource(name=endpoint.table)
        def records() -> Iterator[Any]:
            client = make_client(name, base_url, make_auth(name, auth, secrets), retry)
            yield from endpoint.read(client, secrets.values(), frozen, auth)

        return records()

    return make_source(name, schema_contract, *(resource(e) for e in endpoints))


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def ask_every_seconds(name: str, value: str | float | None) -> float | None:
    """`ask_every` in seconds: a number of seconds, or "<n>s|m|h|d"; None or 0: every run."""
    if value is None:
        return None
    found = DURATION.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
    if not found:
        raise SourceConfigError(
            f"{option(name, 'ask_every')} is {value!r}; expected seconds or a duration "
            'like "90s", "15m", "2h", "1d"'
        )
    seconds = float(found.group(1)) * DURATION_UNITS[found.group(2)]
    return seconds or None


def probe(name: str, options: dict[str, Any], inbox: Flag | None) -> dict[str, Any] | None:
    """For a run that asks before starting dlt (ingestion/unchanged.py): with `ask_every`,
    the API is asked at most that often (a run sooner after its last load skips it); else
    each endpoint is asked once, from its cursor, without dlt (ingestion/api_probe.py);
    None where that cannot be done: the source runs at every run."""
    every = ask_every_seconds(name, options.get("ask_every"))
    if every:
        return {"every": every}
    plan = api_probe.plan(name, options)
    return {"api": plan} if plan else None


def settle_probe(probe: dict[str, Any], source_state: dict[str, Any]) -> dict[str, Any]:
    """The probe to record once the source loaded: each endpoint's cursor and the records
    read at it, from the source's dlt state."""
    if "api" not in probe:
        return probe
    return {"api": api_probe.settled(probe["api"], source_state)}


def with_flags(
    name: str, options: dict[str, Any], inbox: Flag | None, api_url: str | None
) -> dict[str, Any]:
    """`--api-url URL`: the base URL of every rest_api source."""
    return {**options, "base_url": api_url} if api_url else options


def raw_tables(name: str, options: dict[str, Any]) -> list[RawTable]:
    """A raw table per resource, `table` (default its name), merged on its `primary_key`."""
    if not options.get("resources"):
        raise SourceConfigError(f"{option(name, 'resources')}: declare at least one endpoint")
    make_auth(name, options.get("auth"), Secrets(), check_only=True)
    ask_every_seconds(name, options.get("ask_every"))
    tables = []
    for config in options["resources"]:
        endpoint = Endpoint(name, config, options.get("paginator"))
        key = tuple(raw_column_name(k) for k in endpoint.key)
        tables.append(RawTable(endpoint.table, key, versioned=False))
    return tables


class Endpoint:
    """One declared resource: where to read, how to page, its key, cursor and columns."""

    def __init__(
        self, source: str, config: Any, default_paginator: Any, zone: tzinfo = UTC
    ) -> None:
        if not isinstance(config, dict) or "name" not in config:
            raise SourceConfigError(
                f"{option(source, 'resources')}: each resource is a table with a name"
            )
        self.name = str(config["name"])
        where = f"resources[{self.name}]"
        check_keys(source, where, config, RESOURCE_OPTIONS)
        endpoint = config.get("endpoint", {})
        if isinstance(endpoint, str):
            endpoint = {"path": endpoint}
        if not isinstance(endpoint, dict):
            raise SourceConfigError(f"sources.{source}.{where}.endpoint: a path or a table")
        check_keys(source, f"{where}.endpoint", endpoint, ENDPOINT_OPTIONS)
        self.source = source
        self.table = check_stored_name(
            f"sources.{source}.{where}.table",
            config.get("table", self.name),
            "set the resource's table to {!r}",
        )
        self.path = endpoint.get("path", self.name)
        self.params = dict(endpoint.get("params", {}))
        self.data_selector = endpoint.get("data_selector")
        self.paginator_config = endpoint.get("paginator", default_paginator)
        self.key = declared_key(
            source, f"{where}.primary_key", config.get("primary_key"), required=True, as_sent=True
        )
        incremental = endpoint.get("incremental") or {}
        check_keys(source, f"{where}.endpoint.incremental", incremental, INCREMENTAL_OPTIONS)
        self.cursor = incremental.get("cursor_path")
        paginator_for(source, self.paginator_config)  # a bad one fails before anything runs
        self.start_param = incremental.get("start_param")
        self.initial_value = incremental.get("initial_value")
        self.columns = _column_hints(source, self.name, config.get("columns", {}))
        for key in self.key:
            self.columns.setdefault(key, {"data_type": "text"})["nullable"] = False
        if self.cursor:
            hint = self.columns.setdefault(self.cursor, {"data_type": "text"})
            hint.update(nullable=False, dedup_sort="desc")  # a run's newest version wins
        self.columns[LOADED_AT_COLUMN] = {"data_type": "timestamp", "nullable": False}
        self.columns[DIGEST_COLUMN] = {"data_type": "text", "nullable": True}
        self.unchanged = UnchangedRows(self.table)
        # Fields typed `timestamp` whose values come without an offset: wall times in
        # the source's `timezone` (dlt would read them as UTC).
        self.zone = zone
        self.zoned = (
            []
            if zone == UTC
            else [c for c, hint in self.columns.items() if hint.get("data_type") == "timestamp"]
        )

    def read(
        self, client: Any, secrets: list[str], frozen: bool, auth: Any = None
    ) -> Iterator[Any]:
        """Pages of records after the cursor, stamped with `_loaded_at`; bad ones rejected."""
        state = dlt.current.resource_state()
        run = start_run(state, rows_unchanged=0)
        start = state.get(STATE_CURSOR, self.initial_value)
        at_start = set(state.get(STATE_AT_CURSOR, []))
        rejected_before = set(state.get(STATE_REJECTED, []))
        params = dict(self.params)
        if self.start_param and start is not None:
            params[self.start_param] = start
        newest, at_newest = start, set(at_start)
        read_at_newest: list[Any] = []  # every record with the newest cursor (STATE_SEEN)
        loaded_at = datetime.now(UTC)
        paginator = paginator_for(self.source, self.paginator_config)
        pages = iter_pages(
            self.source, client, self.path, params, paginator, self.data_selector, secrets, auth
        )
        for number, page in enumerate(pages, start=1):
            good, rejects = [], []
            for index, record in enumerate(page):
                where = f"{self.path} page {number} record {index + 1}"
                problem = self._problem(record)
                if problem:
                    seen_as = record_digest(record)
                    if seen_as not in rejected_before:
                        rejected_before.add(seen_as)
                        payload = json.dumps(record, default=str, sort_keys=True)
                        rejects.append({"location": where, "reason": problem, "payload": payload})
                    continue
                if frozen:
                    self._check_frozen(record)
                if self.cursor:
                    value, digest = record[self.cursor], api_probe.digest(self._key_of(record))
                    position = compare(value, newest) if newest is not None else 1
                    if position > 0:
                        read_at_newest = [record]
                    elif position == 0:
                        read_at_newest.append(record)
                    order = compare(value, start) if start is not None else 1
                    if order < 0 or (order == 0 and digest in at_start):
                        continue  # loaded by an earlier run
                    if position > 0:
                        newest, at_newest = value, {digest}
                    elif position == 0:
                        at_newest.add(digest)
                good.append({**self._placed(record), LOADED_AT_COLUMN: loaded_at})
            run["rows_read"] += len(good) + len(rejects)
            run["rows_rejected"] += len(rejects)
            good = self.unchanged(good, run)
            if good:
                yield data_rows(
                    good,
                    table_name=self.table,
                    write_disposition="merge",
                    primary_key=list(self.key),
                    columns=self.columns,
                )
            if rejects:
                yield rejected_rows(self.source, self.table, rejects)
        state[STATE_REJECTED] = sorted(rejected_before)
        if self.cursor:
            state[STATE_CURSOR], state[STATE_AT_CURSOR] = newest, sorted(at_newest)
            state[STATE_SEEN] = sorted({record_digest(r) for r in read_at_newest})

    def _placed(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its naive timestamp fields given the source's zone."""
        for column in self.zoned:
            value = record.get(column)
            if isinstance(value, str):
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    continue  # not a time: dlt's typing decides
                if parsed.tzinfo is None:
                    record = {**record, column: parsed.replace(tzinfo=self.zone).isoformat()}
        return record

    def _key_of(self, record: dict[str, Any]) -> Any:
        values = [record[k] for k in self.key]
        return values[0] if len(values) == 1 else values  # one key: as digested before

    def _problem(self, record: Any) -> str | None:
        """Why a record cannot load (None when it can)."""
        if not isinstance(record, dict):
            return "not_an_object"
        for key in self.key:
            if record.get(key) is None:
                return f"missing_{key}"
        collision = colliding_field(record)
        if collision:  # two fields would load into one column: neither value is dropped
            return f"duplicate_column_{collision}"
        if self.cursor:
            if record.get(self.cursor) is None:
                return f"missing_{self.cursor}"
            if api_probe.sortable(record[self.cursor]) is None:
                return f"invalid_{self.cursor}"
        return None

    def _check_frozen(self, record: dict[str, Any]) -> None:
        """Refuse, before anything is extracted, a record a frozen schema cannot take.

        dlt checks a contract on dict rows only when it normalizes them, after the
        cursor has moved, and then keeps retrying the refused package; checking here
        fails the run with nothing extracted and the cursor where it was.
        """
        for field, value in record.items():
            column = self.columns.get(field)
            if column is None:
                raise ApiError(
                    f"{self.source} API sent a new field {field!r} and "
                    f'sources.{self.source}.schema_contract is "freeze": add the column '
                    'or set it to "evolve"'
                )
            if value is not None and not _fits(value, column.get("data_type", "text")):
                raise ApiError(
                    f"{self.source} API sent {field}={value!r}, not a {column['data_type']}, "
                    f'and sources.{self.source}.schema_contract is "freeze"'
                )


def _column_hints(source: str, resource: str, columns: dict[str, Any]) -> dict[str, Any]:
    """`{column = "bigint"}` (or dlt's column tables) as dlt column hints."""
    hints = {}
    for name, hint in columns.items():
        hint = {"data_type": hint} if isinstance(hint, str) else dict(hint)
        if hint.get("data_type") not in DATA_TYPES:
            raise SourceConfigError(
                f"sources.{source}.resources[{resource}].columns.{name}: data_type "
                f"{hint.get('data_type')!r} is not one of {', '.join(DATA_TYPES)}"
            )
        hints[name] = {"nullable": True, **hint}
    return hints


def _fits(value: Any, data_type: str) -> bool:
    if data_type == "bigint":
        return isinstance(value, int) and not isinstance(value, bool)
    if data_type == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if data_type == "timestamp":
        return api_probe.sortable(value) is not None and isinstance(value, str)
    if data_type == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)

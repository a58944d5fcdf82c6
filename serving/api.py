"""The read-only feature API over the published analytics database (`python -m pipeline serve`).

Why it is built this way:

- It reads only what `publish` wrote (`analytics.duckdb`), never the working
  warehouse, so it can never block a run, and it serves only published columns
  (PII is masked there, by publish).
- Each publish is loaded once into memory as a `Snapshot`: `marts.user_features`
  sorted by user_id (Arrow columns + a numpy id array), looked up by binary
  search. No index can be added to a read-only file, and a DuckDB scan per
  request took 30 ms and more for a 1,000-id batch at 1M users; the snapshot
  answers it in a few ms. No SQL is ever built from a request.
- Hot swap: a thread polls the file's identity (device, inode, mtime, size).
  A new publish is read through ATTACH in a fresh in-memory DuckDB:
  `duckdb.connect(path)` in a process that still holds a connection to the old
  file returns DuckDB's cached instance of the *old* file. The reference is
  then swapped in one assignment. A request takes the reference once, so it is
  answered wholly from one run, and the old snapshot is freed (Python's
  reference count) when its last request finishes. The file is closed as soon
  as it is loaded: a publish's `os.replace` is never waited on.
"""

from __future__ import annotations

import argparse
import gc
import hmac
import logging
import os
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
import fastapi_offline
import numpy as np
import orjson
import pyarrow as pa
import yaml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from privacy import masking
from warehouse import fresh
from warehouse.sql import quote, registered

SCHEMA = "marts"
TABLE = "user_features"
KEY = "user_id"
MAX_BATCH = 10_000
MAX_BODY_BYTES = 1 << 20  # 10,000 ids of 20 digits fit in ~210 kB
# A bigint key, limited to the integers every JSON client can hold exactly (I-JSON, RFC 7493);
# at 2**63 JSON Schema validators already compare as floats and accept 2**63 + 191.
MAX_ID = 2**53 - 1
MIN_ID = -MAX_ID
TOKEN_ENV = "SERVE_API_TOKEN"
# The uvicorn workers read their settings from here (`--workers` > 1 starts new processes).
ENV_ANALYTICS = "PIPELINE_SERVE_ANALYTICS"
ENV_PROJECT = "PIPELINE_SERVE_PROJECT_DIR"
ENV_POLL = "PIPELINE_SERVE_POLL_SECONDS"

log = logging.getLogger("uvicorn.error")  # configured and shown by uvicorn


# --------------------------------------------------------------------------- snapshots


class SnapshotError(Exception):
    """The published file has no usable user_features table."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


class ColumnReader:
    """One column laid out for fast gathers: numbers as numpy, the rest dictionary-encoded.

    `numpy[positions].tolist()` makes Python values in C; Arrow's `take` +
    `to_pylist` on every column was ~8 ms for 1,000 rows, this is ~1 ms.
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        kind = array.type
        self.nulls: np.ndarray | None = None
        if array.null_count:
            self.nulls = array.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            filled = array.fill_null(False if pa.types.is_boolean(kind) else 0)
            self.values = filled.to_numpy(zero_copy_only=False)
        else:  # text, timestamps, decimals, ...: distinct Python values + int32 codes
            encoded = array.dictionary_encode()
            distinct = encoded.dictionary.to_pylist()
            self.values = np.empty(len(distinct) + 1, dtype=object)
            self.values[:-1] = distinct  # the extra last slot is None, for nulls
            self.codes = encoded.indices.fill_null(len(distinct)).to_numpy(zero_copy_only=False)
            self.nulls = None
        self.encoded = self.values.dtype == object

    def take(self, positions: np.ndarray) -> list[Any]:
        if self.encoded:
            return self.values[self.codes[positions]].tolist()
        values = self.values[positions].tolist()
        if self.nulls is not None:
            for i in np.flatnonzero(self.nulls[positions]).tolist():
                values[i] = None
        return values


@dataclass(frozen=True)
class FreshBase:
    """What the speed layer adds to: the snapshot's exact aggregates per user (aligned with
    its sorted ids), and which events it holds (its loads, its as-of)."""

    spec: fresh.FreshSpec
    state: dict[str, np.ndarray]  # s<i>_<part> -> one value per snapshot row
    loads: frozenset[str]
    as_of: int  # epoch microseconds
    published_at: int

    def in_snapshot(self, event: tuple[Any, ...]) -> bool:
        """Whether the snapshot counts this stored event: its load and its time are in."""
        return event[fresh.EVENT_LOAD] in self.loads and event[fresh.EVENT_TIME] <= self.as_of


BASE_MEMORY_LIMIT = "384MB"  # DuckDB's, while the speed layer's base is computed


@dataclass(frozen=True)
class Snapshot:
    """One published run's user_features, sorted by user_id, held in memory."""

    run_id: str | None
    published_at: datetime | None
    features_as_of: datetime | None
    tables: dict[str, int]
    columns: tuple[Column, ...]
    readers: tuple[ColumnReader, ...]
    ids: np.ndarray
    identity: tuple[int, ...]
    loaded_at: datetime
    fresh: FreshBase | None = None

    @property
    def row_count(self) -> int:
        return len(self.ids)

    def positions(self, user_ids: list[int]) -> np.ndarray:
        """Row position of each id (-1 when unknown), by binary search on the sorted ids."""
        wanted = np.asarray(user_ids, dtype=np.int64)
        if not len(self.ids):
            return np.full(len(wanted), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        return np.where(self.ids[at] == wanted, at, -1)

    def rows(self, positions: np.ndarray) -> list[dict[str, Any]]:
        """The rows at these positions, in that order (repeats allowed)."""
        names = [c.name for c in self.columns]
        values = [reader.take(positions) for reader in self.readers]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def file_identity(path: Path) -> tuple[int, ...] | None:
    """What changes when publish renames a new file over the old one (None: no file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def load_snapshot(
    path: Path, identity: tuple[int, ...], spec: fresh.FreshSpec | None = None
) -> Snapshot:
    """Read the published file once, read-only, through a fresh in-memory database (with
    the speed layer's base when `spec` is given)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("set TimeZone = 'UTC'")
        masking.attach(con, path, "pub", read_only=True, key=masking.encryption_key())
        columns = tuple(
            Column(name, type_)
            for name, type_ in con.execute(
                "select column_name, data_type from duckdb_columns() "
                "where database_name = 'pub' and schema_name = ? and table_name = ? "
                "order by column_index",
                [SCHEMA, TABLE],
            ).fetchall()
        )
        if KEY not in {c.name for c in columns}:
            raise SnapshotError(f"{path} has no {SCHEMA}.{TABLE} table with a {KEY} column")
        publication: dict[str, Any] = {}
        try:
            cursor = con.execute("select * from pub.meta.publication")
            found = cursor.fetchall()
            if found:
                names = [d[0] for d in cursor.description]
                publication = dict(zip(names, found[0], strict=True))
        except duckdb.CatalogException:
            pass  # a file not written by publish: serve it, without a run id
        table = con.sql(
            f"select * from pub.{SCHEMA}.{TABLE} where {KEY} is not null order by {KEY}"
        ).to_arrow_table()
        as_of = None
        if "features_as_of" in table.column_names:
            as_of = con.execute(f"select max(features_as_of) from pub.{SCHEMA}.{TABLE}").fetchall()
        base = None
        if spec is not None and as_of and as_of[0][0] is not None and publication:
            try:
                base = _fresh_base(con, spec, table[KEY], as_of[0][0], publication)
            except duckdb.Error as exc:  # e.g. no events mart: serve the snapshot alone
                log.warning("speed layer off for this snapshot: %s", str(exc).splitlines()[0])
        con.execute("detach pub")
    finally:
        con.close()
    readers = tuple(ColumnReader(column) for column in table.columns)
    ids = np.asarray(readers[table.column_names.index(KEY)].values, dtype=np.int64)
    del table
    try:
        tables = {
            str(k): int(v) for k, v in orjson.loads(publication.get("tables") or "{}").items()
        }
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        tables = {}
    run_id = publication.get("run_id")
    return Snapshot(
        run_id=str(run_id) if run_id is not None else None,
        published_at=publication.get("published_at"),
        features_as_of=as_of[0][0] if as_of else None,
        tables=tables,
        columns=columns,
        readers=readers,
        ids=ids,
        identity=identity,
        loaded_at=datetime.now(UTC),
        fresh=base,
    )


def _fresh_base(
    con: duckdb.DuckDBPyConnection,
    spec: fresh.FreshSpec,
    ids: pa.ChunkedArray,
    as_of: datetime,
    publication: dict[str, Any],
) -> FreshBase:
    """The events mart's exact aggregates per user at the snapshot's as-of, in the order of
    the snapshot's (sorted) ids; zeros for a user without events."""
    mart = f"pub.{SCHEMA}.{quote(spec.events_mart)}"
    literal = f"cast('{as_of.isoformat(sep=' ')}' as timestamp)"
    # one aggregate per user over every event: bounded, spilling to the temp folder
    con.execute(f"set memory_limit = '{BASE_MEMORY_LIMIT}'")
    con.execute("set temp_directory = ?", [tempfile.gettempdir()])
    with registered(con, "served_ids", pa.table({"key": ids})):
        state = con.sql(
            f"with state as ({spec.state_sql(mart, literal)}) "
            "select state.* exclude (key) from served_ids left join state using (key) "
            "order by served_ids.key"
        ).to_arrow_table()
    arrays = {}
    for name in state.column_names:
        column = state[name]
        if name.endswith("_max"):
            arrays[name] = column.fill_null(fresh.NO_TIME).to_numpy()
        else:
            arrays[name] = column.cast(pa.float64()).fill_null(0.0).to_numpy()
    return FreshBase(
        spec=spec,
        state=arrays,
        loads=frozenset(publication.get("dlt_load_ids") or []),
        as_of=fresh.micros(as_of),
        published_at=fresh.micros(publication["published_at"]),
    )


class SnapshotStore:
    """The snapshot being served, and the thread that swaps in each new publish."""

    def __init__(
        self, path: Path, poll_seconds: float = 0.5, spec: fresh.FreshSpec | None = None
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.spec = spec  # the speed layer's declaration (None: the snapshot alone)
        self.fresh = fresh.Reader(fresh.store_path(path)) if spec is not None else None
        self.current: Snapshot | None = None
        self.last_error: str | None = None
        self._failed: tuple[int, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the file if it changed since the snapshot was taken; True when swapped."""
        with self._refresh_lock:
            identity = file_identity(self.path)
            current = self.current
            if identity is None or identity == self._failed:
                return False
            if current is not None and current.identity == identity:
                return False
            try:
                # Identity is taken before the read: a publish in between only costs a reload.
                snapshot = load_snapshot(self.path, identity, self.spec)
            except (duckdb.Error, OSError, SnapshotError) as exc:
                self._failed = identity
                self.last_error = str(exc).splitlines()[0]
                log.warning("cannot load %s (%s): serving what was loaded before", self.path, exc)
                return False
            self.current = snapshot  # the swap: one reference assignment
            self._failed = None
            self.last_error = None
            log.info(
                "serving run %s (%d users) from %s",
                snapshot.run_id,
                snapshot.row_count,
                self.path,
            )
            return True

    def start(self) -> None:
        self.refresh()
        if self.current is None:
            log.warning("no published features at %s yet: answering 503 until one is", self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="snapshot-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.fresh is not None:
            self.fresh.close()

    def merge_fresh(
        self, snapshot: Snapshot, user_ids: list[int], positions: np.ndarray, rows: list[Any]
    ) -> Freshness | None:
        """Add each found user's events the snapshot does not hold (the speed layer) to its
        row, in place; None when there is no speed layer to ask."""
        base = snapshot.fresh
        if base is None or self.fresh is None:
            return None
        found = self.fresh.rows(
            [u for u, p in zip(user_ids, positions.tolist(), strict=True) if p >= 0]
        )
        through = found.fresh_through
        info = Freshness(
            snapshot_as_of=_utc(fresh.from_micros(base.as_of)),
            fresh_through=_utc(fresh.from_micros(through)) if through is not None else None,
            events_merged=[0] * len(rows),
            held_ids=sorted(found.held),
        )
        if found.dropped_snapshot is not None and found.dropped_snapshot > base.published_at:
            # the store no longer holds what this (older) snapshot lacks: answer from it alone
            info.fresh_through = None
            return info
        if through is None or through <= base.as_of:
            return info
        as_of = fresh.from_micros(through)
        spec = base.spec
        for i, (user, position, row) in enumerate(
            zip(user_ids, positions.tolist(), rows, strict=True)
        ):
            if position < 0 or row is None or user in found.held:
                continue
            events = [
                e
                for e in found.events.get(user, ())
                if e[fresh.EVENT_TIME] <= through and not base.in_snapshot(e)
            ]
            if not events:
                continue
            for f, feature in enumerate(spec.features):
                if feature.name not in row:
                    continue
                added = fresh.event_state(feature, (e[fresh.EVENT_INPUTS + f] for e in events))
                merged = fresh.stored_state(f, feature, base.state, position).merge(added)
                row[feature.name] = fresh.finish(feature, merged, as_of, spec.decimals)
            if "features_as_of" in row:
                row["features_as_of"] = as_of
            info.events_merged[i] = len(events)
        return info

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one bad file
                log.exception("snapshot refresh failed")


# --------------------------------------------------------------------------- dbt docs


@dataclass(frozen=True)
class ModelDocs:
    description: str | None
    columns: dict[str, str]


def model_docs(project_dir: Path, model: str = TABLE) -> ModelDocs:
    """The model's and its columns' descriptions from the dbt YAML (what `dbt docs` shows)."""
    for path in sorted((project_dir / "models").rglob("*.yml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for entry in doc.get("models") or []:
            if isinstance(entry, dict) and entry.get("name") == model:
                columns = {
                    str(c["name"]): " ".join(str(c.get("description") or "").split())
                    for c in entry.get("columns") or []
                    if isinstance(c, dict) and c.get("name")
                }
                description = " ".join(str(entry.get("description") or "").split()) or None
                return ModelDocs(description, columns)
    return ModelDocs(None, {})


# --------------------------------------------------------------------------- API schema

FeatureValue = bool | int | float | str | None


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 17 and 17.0 are one, "17" and true are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("user ids are JSON integers")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("user ids are JSON integers")
        return int(value)
    return value


UserId = Annotated[Annotated[int, Field(ge=MIN_ID, le=MAX_ID)], BeforeValidator(_json_integer)]


class Error(BaseModel):
    detail: str


class FeatureRow(BaseModel):
    run_id: str | None = Field(description="The published run these values come from.")
    user_id: int
    features: dict[str, FeatureValue] = Field(
        description="The user's row of marts.user_features (names and types: GET /metadata)."
    )
    fresh: FreshnessOne | None = Field(
        None, description="With a speed layer: what it added to the published row."
    )


FRESH_GATES = (
    "the merged events passed ingestion's checks and the staging's row rules only; "
    "table-level quality gates run at the next build"
)


class Freshness(BaseModel):
    """What the speed layer added (docs/serving.md)."""

    snapshot_as_of: datetime | None = Field(description="features_as_of of the published row.")
    fresh_through: datetime | None = Field(
        description="Merged rows are as of this instant (their features_as_of): every event "
        "committed by then is in. Null: no speed-layer file yet, or this snapshot is older "
        "than what the file still holds (answers are then the published rows)."
    )
    events_merged: list[int] = Field(
        description="Per row, events added to the published row (0: the row as published)."
    )
    held_ids: list[int] = Field(
        description="Users answered as published because an event of theirs can only be "
        "counted by the next build (its id normalises to an older event's)."
    )
    gated: Literal[False] = Field(False, description=FRESH_GATES)


class FreshnessOne(BaseModel):
    snapshot_as_of: datetime | None
    fresh_through: datetime | None
    events_merged: int
    held: bool
    gated: Literal[False] = Field(False, description=FRESH_GATES)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH:,} integer user ids (|id| < 2**53); repeats allowed.",
    )


class BatchResponse(BaseModel):
    run_id: str | None
    rows: list[dict[str, FeatureValue] | None] = Field(
        description="One entry per requested id, in request order; null for an unknown id."
    )
    unknown_ids: list[int] = Field(description="Requested ids with no row, first-seen order.")
    fresh: Freshness | None = Field(
        None, description="With a speed layer: what it added to the published rows."
    )


class Health(BaseModel):
    status: Literal["ok"]
    run_id: str | None
    published_at: datetime | None
    loaded_at: datetime
    rows: int = Field(description="Rows of marts.user_features being served.")
    tables: dict[str, int] = Field(description="Row counts of every published mart.")


class Unavailable(BaseModel):
    status: Literal["unavailable"]
    detail: str


class Feature(BaseModel):
    name: str
    type: str
    description: str | None


class Metadata(BaseModel):
    run_id: str | None
    published_at: datetime | None
    features_as_of: datetime | None
    table: str
    description: str | None
    features: list[Feature]


# --------------------------------------------------------------------------- app


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _utc(value: datetime | None) -> datetime | None:
    """Marts timestamps are naive UTC (DESIGN.md); say so on the wire (RFC 3339 needs a zone)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# Marts' timestamps are naive UTC: on the wire, ISO 8601 with `Z`, as /metadata's.
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _json(payload: Any, run_id: str | None, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, default=_default, option=JSON_OPTIONS),
        status_code=status_code,
        media_type="application/json",
        headers={"X-Run-Id": run_id} if run_id else None,
    )


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413) before anything parses them."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.limit
        chunks: list[bytes] = []
        size = 0
        more = not too_big
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # client went away: let the app see it
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            too_big = size > self.limit
            more = message.get("more_body", False) and not too_big
        if too_big:
            body = orjson.dumps(
                {"detail": f"request body over {self.limit} bytes: send at most {MAX_BATCH} ids"}
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        buffered = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return buffered
            return await receive()

        await self.app(scope, replay, send)


# Swagger UI's and ReDoc's files, served by the API itself: FastAPI's own pages load them
# from a CDN, and nothing here reaches the internet. The pages' policy lets the browser load
# nothing from anywhere else either (ReDoc would fetch its logo from its CDN).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:"
)


def add_docs_pages(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, offline. Their links carry the server's root_path, as
    FastAPI's own pages do, so they work behind a proxy that serves the API under a prefix."""
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    def offline(page: HTMLResponse) -> HTMLResponse:
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
                swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
                swagger_favicon_url=f"{root}/docs-assets/favicon.png",
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return offline(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
                redoc_favicon_url=f"{root}/docs-assets/favicon.png",
                with_google_fonts=False,
            )
        )


def create_app(
    store: SnapshotStore, token: str | None = None, docs: ModelDocs | None = None
) -> FastAPI:
    """The API over `store`; `token` set = bearer auth on everything but /health."""
    docs = docs or ModelDocs(None, {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.start()
        gc.freeze()  # the long-lived objects loaded so far: keep full collections short
        try:
            yield
        finally:
            store.stop()

    app = FastAPI(
        title="ML Warehouse feature API",
        version="1.0.0",
        description=(
            "Read-only user features from the published analytics database "
            "(marts.user_features), swapped to each new publish without downtime."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_docs_pages(app)
    bearer = HTTPBearer(auto_error=False, description=f"the server's ${TOKEN_ENV}")
    expected = token.encode() if token else None

    # A default, not Annotated[...]: postponed annotations cannot see the local `bearer`.
    def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if expected is not None and not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    secured = [Depends(require_token)] if expected is not None else []
    errors: dict[int | str, dict[str, Any]] = {503: {"model": Error}}
    if expected is not None:
        errors[401] = {"model": Error}

    def snapshot() -> Snapshot:
        current = store.current
        if current is None:
            raise HTTPException(503, "no published features yet: waiting for a pipeline publish")
        return current

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with where and what, without echoing the (possibly 10,000-id) input back."""
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Unavailable}},
        summary="The run being served and its row counts (no auth)",
    )
    async def health() -> Any:
        current = store.current
        if current is None:
            return JSONResponse(
                {"status": "unavailable", "detail": "no published features yet"}, status_code=503
            )
        return Health(
            status="ok",
            run_id=current.run_id,
            published_at=current.published_at,
            loaded_at=current.loaded_at,
            rows=current.row_count,
            tables=current.tables,
        )

    @app.get(
        "/metadata",
        response_model=Metadata,
        responses=errors,
        dependencies=secured,
        summary="Feature names, types and descriptions (from the dbt docs)",
    )
    async def metadata() -> Any:
        current = snapshot()
        return Metadata(
            run_id=current.run_id,
            published_at=current.published_at,
            features_as_of=_utc(current.features_as_of),
            table=f"{SCHEMA}.{TABLE}",
            description=docs.description,
            features=[
                Feature(name=c.name, type=c.type, description=docs.columns.get(c.name))
                for c in current.columns
            ],
        )

    @app.get(
        "/features/{user_id}",
        response_model=FeatureRow,
        responses={404: {"model": Error}, **errors},
        dependencies=secured,
        summary="One user's features",
    )
    async def features_one(
        user_id: Annotated[
            int, PathParam(ge=MIN_ID, le=MAX_ID, description="integer user id, |id| < 2**53")
        ],
    ) -> Response:
        current = snapshot()
        position = int(current.positions([user_id])[0])
        if position < 0:
            return _json({"detail": f"unknown user_id {user_id}"}, current.run_id, 404)
        positions = np.array([position])
        row = current.rows(positions)[0]
        body: dict[str, Any] = {"run_id": current.run_id, "user_id": user_id, "features": row}
        added = store.merge_fresh(current, [user_id], positions, [row])
        if added is not None:
            body["fresh"] = {
                "snapshot_as_of": added.snapshot_as_of,
                "fresh_through": added.fresh_through,
                "events_merged": added.events_merged[0],
                "held": user_id in added.held_ids,
                "gated": False,
            }
        return _json(body, current.run_id)

    @app.post(
        "/features",
        response_model=BatchResponse,
        responses={
            400: {"model": Error, "description": "The body is not JSON"},
            413: {"model": Error, "description": f"Body over {MAX_BODY_BYTES} bytes"},
            **errors,
        },
        dependencies=secured,
        summary=f"Features for up to {MAX_BATCH:,} users, in request order",
    )
    async def features_batch(request: BatchRequest) -> Response:
        current = snapshot()
        positions = current.positions(request.user_ids)
        known = positions >= 0
        found = current.rows(positions[known])
        rows: list[dict[str, Any] | None]
        if bool(known.all()):
            rows = list(found)
            unknown: list[int] = []
        else:
            taken = iter(found)
            rows = [next(taken) if k else None for k in known.tolist()]
            unknown = list(dict.fromkeys(np.asarray(request.user_ids)[~known].tolist()))
        body: dict[str, Any] = {"run_id": current.run_id, "rows": rows, "unknown_ids": unknown}
        added = store.merge_fresh(current, request.user_ids, positions, rows)
        if added is not None:
            body["fresh"] = added.model_dump()
        return _json(body, current.run_id)

    app.add_middleware(BodyLimit)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: each worker process builds its app from the environment."""
    analytics = Path(os.environ[ENV_ANALYTICS])
    project_dir = Path(os.environ.get(ENV_PROJECT, "."))
    spec = fresh.fresh_spec(project_dir / ".dlt" / "config.toml")
    store = SnapshotStore(analytics, float(os.environ.get(ENV_POLL, "0.5")), spec)
    return create_app(store, os.environ.get(TOKEN_ENV) or None, model_docs(project_dir))


def command_serve(args: argparse.Namespace, analytics: Path) -> int:
    """Run uvicorn until interrupted; the settings travel to the workers through env."""
    import uvicorn

    if args.poll <= 0:
        print("error: --poll must be positive", file=sys.stderr)
        return 2
    os.environ[ENV_ANALYTICS] = str(Path(args.analytics or analytics).resolve())
    os.environ[ENV_PROJECT] = str(Path(args.project_dir).resolve())
    os.environ[ENV_POLL] = str(args.poll)
    print(
        f"serving features from {os.environ[ENV_ANALYTICS]} on http://{args.host}:{args.port} "
        f"(auth: {'bearer token' if os.environ.get(TOKEN_ENV) else 'none'}; "
        f"docs at /docs)",
        flush=True,
    )
    uvicorn.run(
        "serving.api:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="debug" if args.debug else "info",
        access_log=args.access_log,
    )
    return 0

"""The speed layer end to end: a Redis stream consumed with --follow, the feature API
serving the published sample plus the events committed since (warehouse/fresh.py).

Each test starts from a copy of the published sample (its as-of pinned at
2026-02-02, before every streamed event), streams events of its users, and
compares the API's answers with what dbt builds from the same warehouse.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import redis
from api_server import Server, start_server
from project_env import PII_HASH_KEY, SAMPLE_TOKEN, SITE_FILES, copy_state, warehouse_env
from realtime_helpers import GROUP, Follower, run_command

from demo.api import serve
from ingestion.kinds.redis_stream import REDIS_DATA_FIELD
from warehouse.fresh import store_path

pytestmark = pytest.mark.slow

FLOATS = ("value_mean", "value_std")
# A run of the file sources (the stream is --follow's); it waits while a batch loads.
RUN = ("run", "--sources", "users", "orders", "products", "--wait", "600")
FRESH_COLUMNS = (
    "event_count",
    "event_count_click",
    "event_count_view",
    "event_count_search",
    "event_count_add_to_cart",
    "event_count_purchase",
    "value_mean",
    "value_std",
    "days_since_last_event",
    "features_as_of",
)


@dataclass
class FreshSite:
    """A copy of the published sample whose events source reads a Redis stream."""

    root: Path
    inbox: Path
    env: dict[str, str]
    client: redis.Redis
    stream: str

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def analytics(self) -> Path:
        return self.root / "analytics.duckdb"

    @property
    def store(self) -> Path:
        return store_path(self.analytics)

    def add(self, *events: dict[str, Any] | str) -> None:
        """XADD each event (a dict as its JSON line, a str as the line itself)."""
        for event in events:
            line = event if isinstance(event, str) else json.dumps(event)
            self.client.xadd(self.stream, {REDIS_DATA_FIELD: line})

    def pipeline(self, *args: str) -> str:
        """`python -m pipeline ...` (with the demo orders API for `run`); its stdout."""
        if args[0] != "run":
            return run_command("python", "-m", "pipeline", *args, env=self.env).stdout
        with serve(self.inbox, token=SAMPLE_TOKEN) as url:
            extra = ("--inbox", str(self.inbox), "--api-url", url)
            return run_command("python", "-m", "pipeline", *args, *extra, env=self.env).stdout

    def follow(self) -> Follower:
        return Follower(self.env, "--interval", "100ms")

    def user_features(self, warehouse: Path | None = None) -> dict[int, dict[str, Any]]:
        with duckdb.connect(str(warehouse or self.warehouse), read_only=True) as con:
            cursor = con.execute("select * from marts.user_features")
            names = [d[0] for d in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}

    def store_keys(self) -> set[int]:
        with sqlite3.connect(self.store) as con:
            return {row[0] for row in con.execute("select distinct key from events")}


@pytest.fixture
def fresh_site(
    published_sample: Path, sample_warehouse: Any, redis_url: str, tmp_path: Path
) -> Iterator[FreshSite]:
    root = tmp_path / "site"
    copy_state(published_sample, root, SITE_FILES)
    stream = f"events-{uuid.uuid4().hex[:8]}"
    env = warehouse_env(root, PII_HASH_KEY=PII_HASH_KEY)
    env.pop("ANALYTICS_PATH", None)
    env.update(
        {
            "SOURCES__EVENTS__BACKEND": "redis",
            "SOURCES__EVENTS__REDIS_URL": redis_url,
            "SOURCES__EVENTS__STREAM": stream,
            "SOURCES__EVENTS__GROUP": GROUP,
        }
    )
    client = redis.Redis.from_url(redis_url)
    yield FreshSite(root, sample_warehouse.inbox, env, client, stream)
    client.delete(stream)
    client.close()


@pytest.fixture
def api(fresh_site: FreshSite) -> Iterator[Server]:
    server = start_server(fresh_site.analytics)
    yield server
    server.stop()


def event(n: int, user: int, category: str = "click", value: Any = 2.5, **extra: Any) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "event_id": f"fresh-{n}",
        "user_id": user,
        "category": category,
        "value": value,
        "occurred_at": now,
        **extra,
    }


def answers(server: Server, users: list[int]) -> tuple[dict[int, dict[str, Any]], dict]:
    """Every user's row as the API answers it, and the batch's `fresh` part."""
    with server.client() as http:
        body = http.post("/features", json={"user_ids": users}).json()
    rows = {u: r for u, r in zip(users, body["rows"], strict=True) if r is not None}
    return rows, body["fresh"]


def health(server: Server) -> dict[str, Any]:
    with server.client() as http:
        return http.get("/health").json()


def wait_for_run(server: Server, old_run_id: str, timeout: float = 600) -> None:
    """Until the API serves a run other than `old_run_id` (it swaps within its poll)."""
    deadline = time.monotonic() + timeout
    while health(server)["run_id"] == old_run_id:
        assert time.monotonic() < deadline, "the API did not swap to the new publish"
        time.sleep(0.05)


def one(server: Server, user: int) -> httpx.Response:
    with server.client() as http:
        return http.get(f"/features/{user}")


def wire(value: Any) -> Any:
    """A warehouse value as the API writes it (timestamps ISO 8601 with Z)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds").replace("+00:00", "") + "Z"
    return value


def assert_rows_equal(api_rows: dict[int, dict], built: dict[int, dict], exact: bool) -> None:
    """Every built row as the API answers it (float features within a rounding step, unless
    `exact`); the timestamps compared as instants."""
    assert set(api_rows) == set(built)
    for user, row in built.items():
        served = api_rows[user]
        for name, value in row.items():
            got = served[name]
            if isinstance(value, datetime):
                assert datetime.fromisoformat(got.replace("Z", "+00:00")) == value.replace(
                    tzinfo=UTC
                ), (user, name)
            elif name in FLOATS and not exact and value is not None and got is not None:
                assert abs(got - value) <= 1.5e-6, (user, name, got, value)
            else:
                assert got == wire(value), (user, name, got, value)


def test_fresh_answers_equal_the_build_through_a_publish_mid_stream(
    fresh_site: FreshSite, api: Server, tmp_path: Path
) -> None:
    """A stream with re-sent events, malformed lines and a user erased mid-stream (the
    erasure's publish lands while events keep coming): no answer ever counts an event twice
    or loses one, and every user's answer is what dbt builds from the same warehouse."""
    site = fresh_site
    users = sorted(site.user_features())
    erased = users[7]  # the user of the first event
    kept = [u for u in users if u != erased]
    before, fresh = answers(api, users)
    assert fresh["fresh_through"] is None and not any(fresh["events_merged"])

    follower = site.follow()
    stop = threading.Event()
    totals: list[int] = []

    def watch() -> None:  # what a client sees, over and over, across the publish
        while not stop.is_set():
            rows, _ = answers(api, kept)
            totals.append(sum(r["event_count"] for r in rows.values()))

    entries = 0
    counted: dict[str, int] = {}  # the events the build counts: first copy of each id

    def produce(count: int) -> None:
        nonlocal entries
        for _ in range(count):
            entries += 1
            n = entries
            if n % 17 == 0:
                site.add('{"event_id": "fresh-' + str(n) + '", "user_id": 3')  # malformed
                continue
            number = n - 1 if n % 13 == 0 else n  # re-sends the one before, other values
            user = users[number * 7 % len(users)]
            site.add(event(number, user, ("click", "view", "purchase")[n % 3], round(n * 0.37, 2)))
            counted.setdefault(f"fresh-{number}", user)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        produce(300)
        follower.wait_until(lambda b: sum(x["acked"] for x in b) >= 300)
        assert one(api, erased).json()["fresh"]["events_merged"] > 0
        # an erasure, which builds and publishes while events keep coming (--follow's
        # batches wait for its lock, then load the events that came meanwhile)
        runner = threading.Thread(
            target=site.pipeline, args=("forget", "--user-id", str(erased), "--wait", "600")
        )
        runner.start()
        while runner.is_alive():
            produce(20)
            runner.join(timeout=0.2)
        produce(100)
        total = entries
        follower.wait_until(lambda b: sum(x["acked"] for x in b) >= total)
    finally:
        stop.set()
        watcher.join(timeout=600)
        assert follower.stop() == 0
    rows, _ = answers(api, kept)  # every batch is in (a batch writes before it acks)
    totals.append(sum(r["event_count"] for r in rows.values()))

    # no event counted twice or dropped while the snapshot changed under the answers
    assert len(totals) > 10
    assert totals == sorted(totals), "an answer lost events"
    expected = sum(before[u]["event_count"] for u in kept)
    expected += sum(1 for user in counted.values() if user != erased)
    assert totals[-1] == expected
    assert one(api, erased).status_code == 404
    assert erased not in site.store_keys()

    # a user with events the snapshot lacks is answered as a build as of fresh_through
    # would answer; every other user as published
    rows, fresh = answers(api, users)
    merged = {u for u, k in zip(users, fresh["events_merged"], strict=True) if k}
    assert merged
    through = fresh["fresh_through"]
    copy = tmp_path / "as-of"
    copy_state(site.root, copy, SITE_FILES)
    env = {**warehouse_env(copy, PII_HASH_KEY=PII_HASH_KEY), "DBT_TARGET_PATH": str(copy / "t")}
    run_command("dbt", "run", "--select", "+user_features", "--vars",
                f'{{features_as_of: "{through}"}}', env=env)  # fmt: skip
    built = site.user_features(copy / "warehouse.duckdb")
    published = site.user_features()
    assert erased not in built and erased not in rows
    assert_rows_equal(rows, {u: built[u] if u in merged else published[u] for u in kept}, False)

    # and once a normal run published them all, every answer is the built row exactly
    run_id = health(api)["run_id"]
    site.pipeline(*RUN)
    wait_for_run(api, run_id)
    rows, fresh = answers(api, users)
    assert not any(fresh["events_merged"])
    assert_rows_equal(rows, site.user_features(), exact=True)


def test_only_events_the_build_would_count_move_a_fresh_feature(
    fresh_site: FreshSite, api: Server
) -> None:
    """Re-sent, malformed, keyless, quarantined and user-less events move nothing; an id
    that normalises to an older event's holds its user at the published row."""
    site = fresh_site
    u, v, w = sorted(site.user_features())[:3]
    published = {user: one(api, user).json()["features"] for user in (u, v, w)}
    follower = site.follow()
    try:
        site.add(
            event(1, u, "click", 4.0),
            event(1, u, "view", 100.0),  # the same event re-sent: collapsed by ingestion
            '{"event_id": "fresh-2", "user_id": ',  # malformed: a rejected row
            event(3, u, occurred_at="not-a-time"),  # quarantined by the staging
            event(4, u, event_id=""),  # no key: a rejected row
            {**event(5, u), "user_id": "abc"},  # no user: counts for nobody
            event(6, v, "purchase", 7.5),
            {**event(7, w), "event_id": " held-7"},
        )
        follower.wait_until(lambda b: sum(x["acked"] for x in b) >= 8)
        site.add({**event(8, w), "event_id": "held-7"})  # the same event id once trimmed
        follower.wait_until(lambda b: sum(x["acked"] for x in b) >= 9)
    finally:
        assert follower.stop() == 0
    rejected = duckdb.connect(str(site.warehouse), read_only=True)
    with rejected:
        reasons = sorted(r[0] for r in rejected.execute("select reason from raw._rejected_rows "
                         "where location like ?", [f"{site.stream}:%"]).fetchall())  # fmt: skip
    assert reasons == ["malformed_json", "missing_event_id"]

    body = one(api, u).json()
    features = body["features"]
    assert body["fresh"]["events_merged"] == 1 and not body["fresh"]["held"]
    assert features["event_count"] == published[u]["event_count"] + 1
    assert features["event_count_click"] == published[u]["event_count_click"] + 1
    assert features["event_count_view"] == published[u]["event_count_view"]
    assert features["days_since_last_event"] == 0
    assert features["features_as_of"] == body["fresh"]["fresh_through"]
    assert body["fresh"]["snapshot_as_of"] == published[u]["features_as_of"]

    held = one(api, w).json()
    assert held["fresh"] == {**held["fresh"], "events_merged": 0, "held": True}
    assert held["features"] == published[w]

"""Events from a real Redis Stream: at-least-once delivery, exactly-once results in raw.events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from realtime_helpers import Follower, Stream, run_command

from demo.produce import MALFORMED_EVERY, MALFORMED_OFFSET, RESEND_EVERY
from ingestion.destination import KEEP_LOADS, make_pipeline
from ingestion.kinds import declared_source
from ingestion.kinds.redis_stream import (
    FAULT_ENV,
    FAULT_EXIT_BEFORE_ACK,
    FAULT_EXIT_CODE,
    RedisStream,
    entry_id,
    entry_line,
)


def run_once(backend: RedisStream, tmp_path: Path, max_batch: int | None = None) -> dict[str, Any]:
    """One load through dlt, acknowledged after `run` returned; returns the resource state."""
    pipeline = make_pipeline("events")
    pipeline.run(
        declared_source("events", folder=str(tmp_path), stream_backend=backend, max_batch=max_batch)
    )
    return pipeline.state["sources"]["events"]["resources"]["events"]


def defects_in(entries: int) -> tuple[int, int]:
    """(re-sent, malformed) among the first `entries` entries of `produce --defects`."""
    resent = entries // RESEND_EVERY
    malformed = (entries + MALFORMED_EVERY - MALFORMED_OFFSET) // MALFORMED_EVERY
    return resent, malformed


def ids(prefix: str, n: int) -> list[str]:
    return [f"evt-{prefix}{i:08d}" for i in range(1, n + 1)]


def test_entry_ids_map_onto_lines_in_order() -> None:
    assert entry_line(b"1736000000123-5") == 1_736_000_000_123_000_005
    assert entry_id(1_736_000_000_123_000_005) == "1736000000123-5"
    assert entry_line("5-999999") < entry_line("6-0")
    with pytest.raises(ValueError, match="auto-generated ids"):
        entry_line("1-1000000")


def test_run_loads_each_entry_once_and_acknowledges(stream: Stream, tmp_path: Path) -> None:
    produced = stream.produce_command(
        "--count", "1200", "--defects", "--id-prefix", "a-", "--seed", "1"
    )  # fmt: skip
    assert produced == {**produced, "entries": 1200, "events": 1186, "resent": 12, "malformed": 2}
    flat = stream.client.xadd(
        stream.name, {"event_id": "flat-1", "user_id": "3", "category": "view", "value": "1.5"}
    )
    backend = stream.backend()

    state = run_once(backend, tmp_path)
    assert stream.pending() == 1201  # loaded, not acknowledged yet
    assert backend.acknowledge() == 1201

    assert state["last_run"] == {
        "rows_read": 1201,
        "rows_rejected": 2,
        "rows_collapsed": 12,
    }
    assert state["stream_ids"] == {stream.name: flat.decode()}
    assert stream.pending() == 0
    assert backend.lag() == 0
    assert stream.query("select count(*), count(distinct event_id) from raw.events") == [
        (1187, 1187)
    ]
    assert [r[0] for r in stream.query("select event_id from raw.events order by event_id")] == [
        *ids("a-", 1186),
        "flat-1",
    ]
    # lineage: _segment is the stream, _line the entry id (ms * 10**6 + seq)
    assert stream.query(
        "select _segment, _line, user_id, value, occurred_at from raw.events"
        " where event_id = 'flat-1'"
    ) == [(stream.name, entry_line(flat), "3", "1.5", None)]
    malformed = [
        f"{stream.name}:{eid.decode()}"
        for eid, fields in stream.client.xrange(stream.name)
        if not fields.get(b"data", b"{}").endswith(b"}")
    ]
    assert len(malformed) == 2
    assert stream.query("select location, reason from raw._rejected_rows order by location") == [
        (location, "malformed_json") for location in sorted(malformed)
    ]

    again = run_once(backend, tmp_path)
    assert again["last_run"]["rows_read"] == 0
    assert backend.acknowledge() == 0


def test_entries_of_a_dead_consumer_are_claimed_and_not_loaded_twice(
    stream: Stream, tmp_path: Path
) -> None:
    stream.produce(1000, "b-", defects=True, seed=2)
    resent, malformed = defects_in(1000)
    dead = stream.backend("consumer-a")
    run_once(dead, tmp_path)  # loaded, then "crashed": never acknowledged
    dead.close()
    assert stream.pending() == 1000

    heir = stream.backend("consumer-b", claim_idle_ms=0)
    state = run_once(heir, tmp_path)
    assert heir.acknowledge() == 1000

    # redelivered: every event already in raw, every rejected row already kept
    assert state["last_run"] == {
        "rows_read": 1000,
        "rows_rejected": 0,
        "rows_collapsed": 1000,
    }
    assert stream.pending() == 0
    events = 1000 - resent - malformed
    assert stream.query("select count(*), count(distinct event_id) from raw.events") == [
        (events, events)
    ]
    assert stream.query("select count(*), count(distinct location) from raw._rejected_rows") == [
        (malformed, malformed)
    ]


def test_kill_between_load_and_ack_then_restart(stream: Stream) -> None:
    """The consumer dies after its load committed, before XACK: no duplicates, no gaps."""
    produced = stream.produce(3000, "k-", defects=True, seed=3)
    events = produced["events"]
    assert (produced["resent"], produced["malformed"]) == defects_in(3000)

    crashing = Follower(
        {**stream.env, FAULT_ENV: FAULT_EXIT_BEFORE_ACK},
        "--max-batch",
        "1200",
        "--interval",
        "0.2s",
    )
    assert crashing.wait() == FAULT_EXIT_CODE
    resent, malformed = defects_in(1200)
    assert stream.query("select count(*) from raw.events") == [(1200 - resent - malformed,)]
    assert stream.pending() == 1200

    follower = Follower(stream.env, "--max-batch", "1200", "--interval", "0.2s")
    follower.wait_until(lambda batches: any(b["lag"] == 0 for b in batches))
    assert follower.stop() == 0
    batches = follower.batches()
    # the redelivered batch: all 1200 entries already loaded, none loaded again
    assert batches[0] == {
        "batch": 1,
        "status": "ok",
        "read": 1200,
        "loaded": 0,
        "rejected": 0,
        "collapsed": 1200,
        "acked": 1200,
        "lag": 1800,
    }
    assert sum(b["read"] for b in batches[1:]) == 1800
    assert sum(b["acked"] for b in batches) == 3000
    assert stream.pending() == 0

    assert stream.query("select count(*), count(distinct event_id) from raw.events") == [
        (events, events)
    ]
    assert [r[0] for r in stream.query("select event_id from raw.events order by 1")] == ids(
        "k-", events
    )
    assert stream.query("select count(*), count(distinct location) from raw._rejected_rows") == [
        (produced["malformed"], produced["malformed"])
    ]

    run_command(
        "dbt", "build", "--select", "+fct_events", "--indirect-selection", "cautious",
        env=stream.env,
    )  # fmt: skip
    assert [r[0] for r in stream.query("select event_id from marts.fct_events order by 1")] == ids(
        "k-", events
    )


def test_producer_faster_than_consumer_lag_reported_and_drained(stream: Stream) -> None:
    follower = Follower(stream.env, "--max-batch", "500", "--interval", "0.2s")
    follower.wait_until(lambda batches: len(batches) >= 1)  # consuming, the stream empty
    produced = stream.produce(4000, "f-", rate=8_000)  # ~8x what 500-event batches keep up with
    assert produced["entries"] == 4000

    follower.wait_until(lambda batches: sum(b["read"] for b in batches) == 4000, timeout=600)
    follower.wait_until(lambda batches: batches[-1]["lag"] == 0)
    assert follower.stop() == 0
    batches = [b for b in follower.batches() if b["read"]]

    assert all(b["status"] == "ok" and b["read"] <= 500 for b in batches)
    lags = [b["lag"] for b in batches]
    peak = lags.index(max(lags))
    assert max(lags) >= 2000  # the consumer fell behind ...
    assert lags[peak:] == sorted(lags[peak:], reverse=True)  # ... and caught up
    assert lags[-1] == 0
    assert stream.pending() == 0
    assert stream.query("select count(*), count(distinct event_id) from raw.events") == [
        (4000, 4000)
    ]
    # a batch a load: the newest loads keep dlt's records and states, not every batch
    assert len(batches) > KEEP_LOADS
    loaded = Path(make_pipeline("events", stream.warehouse).working_dir) / "load" / "loaded"
    assert len(list(loaded.iterdir())) == KEEP_LOADS
    assert stream.query(
        "select count(*) from raw._dlt_pipeline_state where pipeline_name = 'ml_warehouse_events'"
    ) == [(KEEP_LOADS,)]


def test_files_backend_follow_polls_new_segments(stream: Stream, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    def segment(name: str, first: int, n: int) -> None:
        lines = [json.dumps({"event_id": f"e{i}", "user_id": 1}) for i in range(first, first + n)]
        (inbox / name).write_text("\n".join(lines) + "\n")

    segment("events-000001.jsonl", 1, 3)
    env = {**stream.env, "SOURCES__EVENTS__BACKEND": "files", "SOURCES__EVENTS__FOLDER": str(inbox)}
    follower = Follower(env, "--interval", "0.2s")
    follower.wait_until(lambda batches: sum(b["read"] for b in batches) == 3)
    segment("events-000002.jsonl", 4, 2)
    follower.wait_until(lambda batches: sum(b["read"] for b in batches) == 5)
    assert follower.stop() == 0
    assert {b["lag"] for b in follower.batches()} == {None}
    assert stream.query("select count(*) from raw.events") == [(5,)]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ('["user_id", "event_id"]', 3),  # the pair: (1, a) twice is one record
        ("", 4),  # no key: every entry once, by its entry id, redelivered or not
    ],
)
def test_a_stream_with_a_composite_key_or_none_loads_each_record_once(
    stream: Stream, key: str, expected: int
) -> None:
    records = [
        {"user_id": 1, "event_id": "a"},
        {"user_id": 2, "event_id": "a"},
        {"user_id": 1, "event_id": "b"},
        {"user_id": 1, "event_id": "a"},
    ]
    for record in records:
        stream.client.xadd(stream.name, {"data": json.dumps(record)})
    env = {**stream.env, "SOURCES__EVENTS__KEY": key, "SOURCES__EVENTS__MAX_REJECTED_RATE": "1"}

    run_command("python", "-m", "ingestion", "events", env=env)
    again = run_command("python", "-m", "ingestion", "events", env=env)

    assert "| events | nothing new | 0 | 0 |" in again.stdout  # the group has taken all
    assert stream.query("select count(*) from raw.events") == [(expected,)]
    assert stream.pending() == 0


def test_a_drained_group_is_nothing_new_until_an_entry_arrives(stream: Stream) -> None:
    """`python -m ingestion events` asks the consumer group before importing dlt: once it
    has been given and has acknowledged every entry, no dlt pipeline runs."""

    def ingest() -> dict[str, Any]:
        summary = stream.warehouse.parent / "summary.json"
        run_command(
            "python", "-m", "ingestion", "events", "--summary-json", str(summary),
            env=stream.env,
        )  # fmt: skip
        (source,) = json.loads(summary.read_text())["sources"]
        return source

    stream.produce(50, "d-")
    first = ingest()
    assert (first["status"], first["rows_loaded"], first["dlt_pipeline"]) == ("ok", 50, True)
    quiet = ingest()
    assert (quiet["status"], quiet["rows_read"], quiet["dlt_pipeline"]) == ("nothing new", 0, False)
    loads = stream.query("select count(*) from raw._dlt_loads")
    stream.produce(1, "e-")
    more = ingest()
    assert (more["status"], more["rows_loaded"], more["dlt_pipeline"]) == ("ok", 1, True)
    assert stream.query("select count(*) from raw._dlt_loads")[0][0] == loads[0][0] + 1
    assert ingest()["status"] == "nothing new"

"""`python -m demo.produce`: write sample-shaped events to a Redis Stream at a set rate.

For demos and benchmarks of `python -m ingestion events --follow`. Each entry
carries one event JSON line in its `data` field, shaped like the sample's
segments (`{"event_id": "evt-...", "user_id": 17, "category": "click",
"value": 3.25, "occurred_at": "...Z"}`), with occurred_at = now. The entry id
is Redis's own (XADD *): its milliseconds are when the event was produced.
`--defects` adds known defects at fixed places (every 100th entry re-sends the
previous event, every 500th is a truncated JSON object), so counts stay exact.
Prints one JSON line of counts at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from demo.generator import EVENT_BASE_CENTS, EVENT_CATEGORIES, EVENT_CATEGORY_P
from ingestion.kinds.jsonl import DEFAULT_REDIS_URL
from ingestion.kinds.redis_stream import REDIS_DATA_FIELD

BLOCK = 1000  # events drawn at a time
TICK = 0.01  # seconds of events written per pipelined round trip
RESEND_EVERY = 100  # with --defects: entry 100, 200, ... re-sends the previous event
MALFORMED_EVERY = 500  # with --defects: entry 250, 750, ... is a truncated object
MALFORMED_OFFSET = 250


def parse_rate(text: str) -> float:
    """Events per second from `10000/s`, `10k/s`, `600/m` or a plain number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(k?)\s*(?:/\s*(s|m))?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (use e.g. 10000/s, 10k/s, 600/m)")
    value = float(match.group(1)) * (1000 if match.group(2) else 1)
    return value / 60 if match.group(3) == "m" else value


def parse_seconds(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 10s, 2m)")
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2) or "s"]


class EventMaker:
    """Sample-shaped event lines with increasing event ids (`evt-<prefix><n:08d>`)."""

    def __init__(self, prefix: str, first: int, users: int, seed: int | None) -> None:
        self.prefix, self.next_number, self.users = prefix, first, users
        self.rng = np.random.default_rng(seed)
        self._buffer: list[str] = []

    def next_line(self) -> str:
        """One event line (drawn in blocks: numpy per event would cap the rate)."""
        if not self._buffer:
            self._buffer = self.lines(BLOCK)[::-1]
        return self._buffer.pop()

    def lines(self, n: int) -> list[str]:
        category = self.rng.choice(len(EVENT_CATEGORIES), size=n, p=EVENT_CATEGORY_P)
        cents = np.rint(EVENT_BASE_CENTS[category] * (0.5 + self.rng.random(n))).astype(np.int64)
        user = self.rng.integers(1, self.users + 1, n)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = []
        for i in range(n):
            out.append(
                json.dumps(
                    {
                        "event_id": f"evt-{self.prefix}{self.next_number + i:08d}",
                        "user_id": int(user[i]),
                        "category": EVENT_CATEGORIES[category[i]],
                        "value": int(cents[i]) / 100,
                        "occurred_at": now,
                    }
                )
            )
        self.next_number += n
        return out


def entries(
    maker: EventMaker, count: int | None, defects: bool, counts: dict[str, int]
) -> Iterator[str]:
    """Entry payloads in order; `counts` tracks events, re-sends and malformed lines."""
    index = 0
    previous = ""
    while count is None or index < count:
        index += 1
        if defects and index % RESEND_EVERY == 0 and previous:
            counts["resent"] += 1
            yield previous
        elif defects and index % MALFORMED_EVERY == MALFORMED_OFFSET and previous:
            counts["malformed"] += 1
            yield previous[:30]  # a truncated copy: rejected, never an event
        else:
            previous = maker.next_line()
            counts["events"] += 1
            yield previous


def produce(
    client: redis.Redis,
    stream: str,
    rate: float,
    count: int | None,
    duration: float | None,
    maker: EventMaker,
    defects: bool = False,
) -> dict[str, Any]:
    """Write entries at `rate` a second until `count` entries or `duration` seconds."""
    counts = {"entries": 0, "events": 0, "resent": 0, "malformed": 0}
    source = entries(maker, count, defects, counts)
    per_tick = max(1, round(rate * TICK))
    started = time.monotonic()
    done = False
    while not done:
        due = started + counts["entries"] / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if duration is not None and time.monotonic() - started >= duration:
            break
        pipe = client.pipeline(transaction=False)
        n = 0
        for payload in source:
            pipe.xadd(stream, {REDIS_DATA_FIELD: payload})
            n += 1
            if n == per_tick:
                break
        else:
            done = True
        if n:
            pipe.execute()
        counts["entries"] += n
    seconds = time.monotonic() - started
    return {
        "stream": stream,
        **counts,
        "seconds": round(seconds, 3),
        "rate": round(counts["entries"] / seconds, 1) if seconds else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.produce",
        description="Write sample-shaped events to a Redis Stream at a set rate.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SOURCES__EVENTS__REDIS_URL", DEFAULT_REDIS_URL),
        help="default: $SOURCES__EVENTS__REDIS_URL or %(default)s",
    )
    parser.add_argument("--stream", default="events")  # the demo's jsonl source
    parser.add_argument(
        "--rate", type=parse_rate, default=1000.0, help="e.g. 10000/s (default 1000/s)"
    )
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, help="entries to write")
    stop.add_argument("--duration", type=parse_seconds, help="how long to write (e.g. 10s)")
    parser.add_argument(
        "--id-prefix",
        help="event ids are evt-<prefix><n:08d> (default: a random prefix, unique per run)",
    )
    parser.add_argument("--first", type=int, default=1, help="first event number (default 1)")
    parser.add_argument("--users", type=int, default=1000, help="user_ids drawn from 1..N")
    parser.add_argument("--seed", type=int, help="random seed for user, category and value")
    parser.add_argument("--defects", action="store_true", help="add re-sent and malformed entries")
    args = parser.parse_args(argv)
    if args.count is None and args.duration is None:
        parser.error("give --count N or --duration D")
    prefix = args.id_prefix if args.id_prefix is not None else secrets.token_hex(3) + "-"
    client = redis.Redis.from_url(args.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"error: cannot reach redis at {args.redis_url}: {exc}", file=sys.stderr)
        return 1
    maker = EventMaker(prefix, args.first, args.users, args.seed)
    try:
        summary = produce(
            client, args.stream, args.rate, args.count, args.duration, maker, args.defects
        )
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

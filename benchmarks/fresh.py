"""Speed-layer benchmark: from XADD to the feature API's first answer that counts the event.

Builds and publishes a sample warehouse (its own folder, its own redis-server),
then starts the feature API (`python -m pipeline serve`) and the stream
consumer (`python -m ingestion events --follow`) on it. For each --rates value
a producer writes sample events of random users at that rate for --duration
seconds while:

- tracers (4 threads, each with a user of its own that the producer never
  writes) add one event, note the time just before its XADD, and ask
  `GET /features/{user}` every 2 ms until its event_count counts it; the
  difference is one latency sample (p50/p95/p99 over all of them);
- a client asks `GET /features/{random user}` back to back on one kept-alive
  connection: the API's own latency under that load (p50/p99), measured by a
  Python client (http.client) on the same cores.

Everything runs on this machine's cores together (redis, consumer, API,
producer, tracers, client). Prints a markdown table and writes JSON with
--json. Usage:
    .venv/bin/python benchmarks/fresh.py [--rates 1000,10000] [--duration 30] [--users 10000]
    .venv/bin/python benchmarks/fresh.py --smoke     # a few seconds, to check it runs
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import redis

from benchmarks.realtime import GROUP, Consumer, free_port, start_redis
from demo.api import serve
from demo.generator import generate
from demo.produce import EventMaker, produce
from ingestion.kinds.redis_stream import REDIS_DATA_FIELD

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-fresh-token"
TRACERS = 4
POLL = 0.002  # seconds between a tracer's questions
TARGETS = {1000: 2000.0, 10000: 5000.0}  # events/s -> p95 target, ms
API_P99_TARGET_MS = 10.0


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Api:
    """One kept-alive HTTP connection to the feature API."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def features(self, user: int) -> dict[str, Any]:
        self.connection.request("GET", f"/features/{user}")
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /features/{user}: {response.status} {body[:200]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.connection.close()


def publish_sample(work: Path, users: int, env: dict[str, str]) -> None:
    """The sample generated, ingested from files, built and published (a normal run)."""
    inbox = work / "inbox"
    generate(inbox, users=users, seed=7)
    with serve(inbox, token=TOKEN) as url:
        command = [sys.executable, "-m", "pipeline", "run", "--inbox", str(inbox)]
        subprocess.run(
            [*command, "--api-url", url], cwd=ROOT, env=env, check=True, capture_output=True
        )


def start_api(analytics: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "pipeline", "serve", "--analytics", str(analytics)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the feature API did not start")


def trace(
    client: redis.Redis,
    stream: str,
    port: int,
    user: int,
    tag: str,
    stop: threading.Event,
    out: Samples,
) -> None:
    """One tracer: an event of `user`, then ask until the API counts it; again until stop."""
    api = Api(port)
    try:
        count = api.features(user)["features"]["event_count"]
        n = 0
        while not stop.is_set():
            n += 1
            now = datetime.now(UTC)
            line = {
                "event_id": f"trace-{tag}-{user}-{n}",  # a new id each scenario
                "user_id": user,
                "category": "click",
                "value": 1.0,
                "occurred_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            started = time.perf_counter()
            client.xadd(stream, {REDIS_DATA_FIELD: json.dumps(line)})
            while api.features(user)["features"]["event_count"] <= count:
                if time.perf_counter() - started > 120:
                    raise RuntimeError(f"event {line['event_id']} not served after 120 s")
                time.sleep(POLL)
            out.values.append((time.perf_counter() - started) * 1000)
            count += 1
            time.sleep(random.uniform(0, 0.1))  # tracers out of step with each other
    finally:
        api.close()


def load(port: int, users: list[int], stop: threading.Event, out: Samples) -> None:
    """Single-user lookups back to back: the API's own latency under the stream."""
    api = Api(port)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            api.features(random.choice(users))
            out.values.append((time.perf_counter() - started) * 1000)
    finally:
        api.close()


def served_users(analytics: Path) -> list[int]:
    with duckdb.connect(str(analytics), read_only=True) as con:
        rows = con.execute("select user_id from marts.user_features order by 1").fetchall()
    return [r[0] for r in rows]


def scenario(
    url: str, stream: str, port: int, users: list[int], rate: int, duration: float
) -> dict[str, Any]:
    """The producer writes users below the tracers' (the last TRACERS served ids)."""
    client = redis.Redis.from_url(url)
    stop = threading.Event()
    latencies, lookups = Samples(), Samples()
    tracer_users = users[-TRACERS:]
    threads = [
        threading.Thread(target=trace, args=(client, stream, port, u, str(rate), stop, latencies))
        for u in tracer_users
    ]
    threads.append(threading.Thread(target=load, args=(port, users, stop, lookups)))
    maker = EventMaker(f"r{rate}-", 1, tracer_users[0] - 1, seed=rate)
    for thread in threads:
        thread.start()
    produced = produce(client, stream, rate, None, duration, maker)
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    client.close()
    p95 = latencies.quantile(0.95)
    api_p99 = lookups.quantile(0.99)
    return {
        "rate": rate,
        "produced_rate": produced["rate"],
        "events": produced["events"],
        "samples": len(latencies.values),
        "p50_ms": latencies.quantile(0.5),
        "p95_ms": p95,
        "p99_ms": latencies.quantile(0.99),
        "p95_target_ms": TARGETS.get(rate),
        "p95_met": p95 is not None and rate in TARGETS and p95 <= TARGETS[rate],
        "api_requests": len(lookups.values),
        "api_p50_ms": lookups.quantile(0.5),
        "api_p99_ms": api_p99,
        "api_p99_met": api_p99 is not None and api_p99 <= API_P99_TARGET_MS,
    }


def table(rows: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.2f}"

    lines = [
        "| rate | produced/s | samples | XADD → API p50 ms | p95 ms | p99 ms | p95 target "
        "| met | API requests | API p50 ms | API p99 ms | p99 ≤ 10 ms |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        target = "-" if r["p95_target_ms"] is None else f"≤ {r['p95_target_ms']:,.0f} ms"
        lines.append(
            f"| {r['rate']:,}/s | {r['produced_rate']:,.0f} | {r['samples']} | {ms(r['p50_ms'])} "
            f"| {ms(r['p95_ms'])} | {ms(r['p99_ms'])} | {target} "
            f"| {'yes' if r['p95_met'] else 'no'} | {r['api_requests']:,} | {ms(r['api_p50_ms'])} "
            f"| {ms(r['api_p99_ms'])} | {'yes' if r['api_p99_met'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000", help="events/s, comma-separated")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--users", type=int, default=10_000, help="users of the sample")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="1000/s for 3 s, 500 users")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rates, args.duration, args.users = "1000", 3.0, 500
    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        work = Path(tmp)
        server, url = start_redis(work)
        stream = "events"
        env = {
            **os.environ,
            "WAREHOUSE_PATH": str(work / "warehouse.duckdb"),
            "DBT_PROFILES_DIR": str(ROOT / "profiles"),
            "DBT_TARGET_PATH": str(work / "target"),
            "DBT_LOG_PATH": str(work / "logs"),
            "SOURCES__ORDERS__API_TOKEN": TOKEN,
        }
        env.pop("ANALYTICS_PATH", None)
        api = consumer = None
        try:
            publish_sample(work, args.users, env)
            stream_env = {
                **env,
                "SOURCES__EVENTS__BACKEND": "redis",
                "SOURCES__EVENTS__REDIS_URL": url,
                "SOURCES__EVENTS__STREAM": stream,
                "SOURCES__EVENTS__GROUP": GROUP,
            }
            api, port = start_api(work / "analytics.duckdb", env)
            consumer = Consumer(stream_env, 50_000, "1s")
            consumer.wait_for(lambda batches: len(batches) >= 1, timeout=300)
            rates = [int(r) for r in args.rates.split(",") if r]
            users = served_users(work / "analytics.duckdb")
            rows = []
            for rate in rates:
                seen = len(consumer.batches)
                rows.append(scenario(url, stream, port, users, rate, args.duration))
                batches = consumer.batches[seen:]
                rows[-1]["batches"] = len(batches)
                rows[-1]["failed_batches"] = sum(b["status"] != "ok" for b in batches)
                rows[-1]["max_lag"] = max((b.get("lag") or 0 for b in batches), default=0)
        finally:
            if consumer is not None:
                consumer.stop()
            if api is not None:
                api.terminate()
                api.wait(timeout=60)
            server.terminate()
            server.wait(timeout=10)
    cpus = os.cpu_count()
    print(f"{args.users:,} users, {args.duration:g} s per rate, {cpus} CPUs, all on this machine\n")
    print(table(rows))
    if args.json:
        document = {"users": args.users, "duration": args.duration, "cpus": cpus, "rows": rows}
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

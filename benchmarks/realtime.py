"""Real-time benchmark: Redis Streams → `python -m ingestion events --follow` → raw.events.

Starts its own redis-server on 127.0.0.1 and a fresh warehouse per scenario
(nothing touches data/), then:

- latency at each --rates value: the producer writes at that rate for
  --duration seconds while the consumer follows; per event, latency =
  commit time of the load that holds it (raw._dlt_loads.inserted_at) minus
  the time it was produced (the millisecond part of its entry id, which
  raw.events._line keeps). p50 / p95 / max over every event.
- sustained throughput: --backlog events written before the consumer starts,
  drained in --max-batch batches; events / (first batch start → lag 0).

Prints a markdown table. Usage:
    .venv/bin/python benchmarks/realtime.py [--rates 1000,10000] [--duration 20] [--backlog 300000]
    .venv/bin/python benchmarks/realtime.py --smoke      # a few seconds, to check it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import redis

ROOT = Path(__file__).resolve().parents[1]
GROUP = "warehouse"

LATENCY_SQL = """
    with per_event as (
        select epoch_ms(l.inserted_at) - e._line // 1000000 as latency_ms
        from raw.events as e
        inner join raw._dlt_loads as l on e._dlt_load_id = l.load_id
    )
    select
        count(*),
        quantile_cont(latency_ms, 0.5),
        quantile_cont(latency_ms, 0.95),
        max(latency_ms)
    from per_event
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


class Consumer:
    """The --follow consumer as a subprocess; its batch lines collected as they come."""

    def __init__(self, env: dict[str, str], max_batch: int, interval: str) -> None:
        command = [sys.executable, "-m", "ingestion", "events", "--follow"]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*command, "--max-batch", str(max_batch), "--interval", interval],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.batches: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.replace(":", "").split()
            if len(words) > 4 and words[0] == "batch":
                row: dict[str, Any] = {"status": words[2], "seconds": float(words[-2])}
                for key, value in zip(words[3:-2:2], words[4:-2:2], strict=True):
                    row[key] = None if value == "-" else int(value)
                row["at"] = time.monotonic()
                self.batches.append(row)

    def wait_for(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.batches):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"consumer stopped or timed out; batches: {self.batches[-3:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self.reader.join(timeout=5)


def scenario_env(url: str, workdir: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "WAREHOUSE_PATH": str(workdir / name / "warehouse.duckdb"),
        "SOURCES__EVENTS__BACKEND": "redis",
        "SOURCES__EVENTS__REDIS_URL": url,
        "SOURCES__EVENTS__STREAM": name,
        "SOURCES__EVENTS__GROUP": GROUP,
    }


def produce(url: str, stream: str, rate: int, **limit: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", "demo.produce", "--redis-url", url]
    command += ["--stream", stream, "--rate", f"{rate}/s"]
    for key, value in limit.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def latency(url: str, workdir: Path, rate: int, duration: float, max_batch: int) -> dict[str, Any]:
    name = f"latency-{rate}"
    env = scenario_env(url, workdir, name)
    consumer = Consumer(env, max_batch, "1s")
    consumer.wait_for(lambda batches: len(batches) >= 1, timeout=120)  # started, group created
    produced = produce(url, name, rate, duration=f"{duration}s")
    total = produced["entries"]
    consumer.wait_for(lambda b: sum(x["read"] for x in b) >= total and b[-1]["lag"] == 0, 600)
    consumer.stop()
    with duckdb.connect(env["WAREHOUSE_PATH"], read_only=True) as con:
        count, p50, p95, worst = con.execute(LATENCY_SQL).fetchall()[0]
    busy = [b for b in consumer.batches if b["read"]]
    return {
        "scenario": f"live {rate}/s for {duration:g} s",
        "events": count,
        "produced_rate": produced["rate"],
        "batches": len(busy),
        "mean_batch": round(sum(b["read"] for b in busy) / max(len(busy), 1)),
        "max_lag": max((b["lag"] or 0) for b in consumer.batches),
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": worst,
        "throughput": None,
    }


def throughput(url: str, workdir: Path, backlog: int, max_batch: int) -> dict[str, Any]:
    name = "throughput"
    env = scenario_env(url, workdir, name)
    produced = produce(url, name, 1_000_000, count=backlog)
    consumer = Consumer(env, max_batch, "1s")
    consumer.wait_for(lambda b: sum(x["read"] for x in b) >= backlog, timeout=1200)
    consumer.stop()
    busy = [b for b in consumer.batches if b["read"]]
    first_start = busy[0]["at"] - busy[0]["seconds"]
    elapsed = busy[-1]["at"] - first_start
    with duckdb.connect(env["WAREHOUSE_PATH"], read_only=True) as con:
        count = con.execute("select count(*) from raw.events").fetchall()[0][0]
    return {
        "scenario": f"backlog of {backlog} events",
        "events": count,
        "produced_rate": produced["rate"],
        "batches": len(busy),
        "mean_batch": round(sum(b["read"] for b in busy) / len(busy)),
        "max_lag": max((b["lag"] or 0) for b in consumer.batches),
        "p50_ms": None,
        "p95_ms": None,
        "max_ms": None,
        "throughput": round(count / elapsed),
    }


def table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:,.0f}" if isinstance(value, float | int) else str(value)

    header = (
        "| scenario | events in raw | produced/s | batches | mean batch | max lag "
        "| latency p50 ms | p95 ms | max ms | sustained events/s |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        keys = ("events", "produced_rate", "batches", "mean_batch", "max_lag")
        keys += ("p50_ms", "p95_ms", "max_ms", "throughput")
        lines.append(f"| {r['scenario']} | " + " | ".join(cell(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000", help="events/s, comma-separated")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--backlog", type=int, default=300_000, help="events for the drain test")
    parser.add_argument("--max-batch", type=int, default=50_000)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run: 1000/s for 2 s, 20k backlog"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rates, args.duration, args.backlog = "1000", 2.0, 20_000
    rates = [int(r) for r in args.rates.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as tmp:
        workdir = Path(tmp)
        server, url = start_redis(workdir)
        try:
            rows = [latency(url, workdir, rate, args.duration, args.max_batch) for rate in rates]
            rows.append(throughput(url, workdir, args.backlog, args.max_batch))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"consumer: --max-batch {args.max_batch} --interval 1s; {os.cpu_count()} CPUs\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

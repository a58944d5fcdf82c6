"""Feature API latency and throughput at 1M users: `python -m pipeline serve` under wrk.

    .venv/bin/python benchmarks/serving.py [--users 1000000] [--seconds 10] [--workers 1]

Writes a synthetic published file (marts.user_features with the contract's
columns and types, rows stored in random id order, like a real build) into a
temp folder, starts the server on a free 127.0.0.1 port in a child process,
checks one answer against DuckDB, then drives it with wrk (`apt-get install
wrk`; Lua scripts for random ids and 1,000-id POST bodies). Prints a markdown
table with the machine it ran on. Targets: single p99 <= 10 ms, 1,000-id batch
p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
MODELS_YML = ROOT / "models" / "marts" / "ml" / "_ml__models.yml"

SINGLE_LUA = """
math.randomseed(42)
request = function()
  return wrk.format("GET", "/features/" .. math.random(1, {users}))
end
"""

BATCH_LUA = """
math.randomseed(7)
local bodies = {{}}
for b = 1, 64 do
  local ids = {{}}
  for i = 1, {batch} do ids[i] = math.random(1, {users}) end
  bodies[b] = '{{"user_ids":[' .. table.concat(ids, ",") .. ']}}'
end
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", "/features", {{["Content-Type"] = "application/json"}}, bodies[n])
end
"""


def _value(name: str, data_type: str) -> str:
    """Synthetic but plausible values (with nulls) from a per-user hash `h`."""
    kind = data_type.lower()
    if name == "user_id":
        return "user_id"
    if kind == "double":
        return "case when h % 13 = 0 then null else (h % 100000) / 7.0 end"
    if kind == "bigint":
        return "case when h % 17 = 0 then null else h % 97 end"
    if kind == "boolean":
        return "h % 2 = 0"
    if kind == "timestamp":
        return "timestamp '2026-02-02 00:00:00'"
    if kind == "varchar":
        return f"'{name[:6]}-' || (h % 997)"
    raise SystemExit(f"no synthetic values for {name} {data_type}")


def write_analytics(path: Path, users: int) -> float:
    doc = yaml.safe_load(MODELS_YML.read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == "user_features")
    columns = [(c["name"], c["data_type"]) for c in model["columns"]]
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts")
        con.execute("create schema meta")
        con.execute(
            "create table marts.user_features (" + ", ".join(f"{n} {t}" for n, t in columns) + ")"
        )
        con.execute(
            "insert into marts.user_features select "
            + ", ".join(_value(n, t) for n, t in columns)
            + f" from (select i as user_id, hash(i) % 1000000007 as h from range(1, {users + 1})"
            " as r(i)) order by h"
        )
        con.execute(
            "create table meta.publication as select 'bench' as run_id, "
            "now() as published_at, null as dbt_invocation_id, []::varchar[] as dlt_load_ids, "
            "? as tables",
            [json.dumps({"user_features": users})],
        )
        con.execute("checkpoint")
    finally:
        con.close()
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Result:
    name: str
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int, name: str) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return Result(
        name,
        connections,
        requests,
        rps,
        _ms(percentile["50"]),
        _ms(percentile["99"]),
        errors,
    )


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split()[1]
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} × {model} (`nproc` = {os.cpu_count()}), "
        f"{int(memory) / 1024 / 1024:.1f} GB RAM, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, load average {load:.1f} at the start"
    )


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_mb(int(child)) for child in children)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10, help="per scenario")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--batch", type=int, default=1000, help="ids per POST")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        folder = Path(tmp)
        analytics = folder / "analytics.duckdb"
        generated = write_analytics(analytics, args.users)
        single = folder / "single.lua"
        single.write_text(SINGLE_LUA.format(users=args.users))
        batch = folder / "batch.lua"
        batch.write_text(BATCH_LUA.format(users=args.users, batch=args.batch))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "SERVE_API_TOKEN"}
        about = machine()
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--analytics", str(analytics)]
            + ["--port", str(port), "--workers", str(args.workers)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    if get(f"{url}/health")[0] == 200:
                        break
                except OSError:
                    pass
                if server.poll() is not None or time.perf_counter() - started > 300:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            ready = time.perf_counter() - started
            status, body = get(f"{url}/features/17")
            with duckdb.connect(str(analytics), read_only=True) as con:
                expected = con.execute(
                    "select user_id, event_count from marts.user_features where user_id = 17"
                ).fetchone()
            served = json.loads(body)["features"]
            assert status == 200 and (served["user_id"], served["event_count"]) == expected
            wrk(url, single, 4, 2, "warm-up")
            results = [
                wrk(url, single, 1, args.seconds, "single lookup, 1 connection"),
                wrk(url, single, 16, args.seconds, "single lookup, 16 connections"),
                wrk(url, batch, 1, args.seconds, f"{args.batch:,}-id batch, 1 connection"),
                wrk(url, batch, 4, args.seconds, f"{args.batch:,}-id batch, 4 connections"),
            ]
            memory = rss_mb(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    print(
        f"\n{args.users:,} users (file written in {generated:.1f} s); server ready "
        f"(start-up + snapshot load) in {ready:.1f} s, RSS {memory:.0f} MB "
        f"(all processes), {args.workers} worker(s); wrk -t1, {args.seconds} s per row; "
        f"{datetime.now(UTC):%Y-%m-%d}\n\n{about}\n"
    )
    print("| scenario | requests | throughput | p50 | p99 | errors | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ids = args.batch if "batch" in r.name else 1
        target = 50.0 if "batch" in r.name else 10.0
        print(
            f"| {r.name} | {r.requests:,} | {r.rps:,.0f} req/s ({r.rps * ids:,.0f} ids/s) "
            f"| {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms | {r.errors} | p99 ≤ {target:g} ms "
            f"| {'yes' if r.p99_ms <= target else '**no**'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

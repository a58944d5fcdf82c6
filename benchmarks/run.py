"""Benchmarks: throughput, memory and incremental cost, each against a baseline in the same run.

    python benchmarks/run.py --rows 1000000          # what `make bench` runs
    python benchmarks/run.py --rows 10000 --repeat 1 # CI smoke test

Generates sample data with `demo.generator` at the requested scale,
then times the product's own commands (`python -m ingestion`, and `python -m
pipeline run` for the pipeline rows) as child processes, interleaved with baselines that do
the same job (DuckDB's native readers, pandas). Every command is a fresh child
process, so start-up counts as a user sees it (and is reported on its own row),
and each child's peak RSS comes from the kernel (`wait4`). Machines are noisy:
each number is the median of `--repeat` runs, and each ratio compares medians
taken in the same run, interleaved rep by rep.

Prints a markdown table and writes `benchmarks/results/<date>-<rows>.json`.
Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warehouse.sources import declared_source_names  # reads config.toml: imports nothing heavy

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
TOKEN = "bench-token"
SEED = 42
EVENTS_PER_USER = 10  # pipeline sample: rows/10 users with 10 events each = rows events
SEGMENT_SIZE = 5000  # the generator's default stream segment
INCREMENT = 0.01  # the incremental run adds 1% new events
# The orders API pages dicts through dlt (~3k orders/s here): a fixed, small orders
# sample keeps the pipeline rows about the N events, not about the REST source.
ORDERS_SAMPLE_USERS = 1000
PARTS = ("csv", "jsonl", "users", "pipeline", "peers")  # --only; the start-up row always runs
# dlt's filesystem source with each of its readers, and the source of ours on the same files
PEERS = (("read_csv", "users"), ("read_csv_duckdb", "users"), ("read_jsonl", "events"))
NO_NODE = "tag:benchmark_selects_no_node"  # dbt build of nothing: its fixed cost
# The users chain: every model that reads the users source, and the seeds it reads;
# `cautious`: no test that also reads a model outside it (fct_events' relationships).
USERS_CHAIN = ["--select", "+dim_users", "+quarantine_users", "--indirect-selection", "cautious"]


@dataclass
class Run:
    """One child process: wall seconds, peak RSS (MB), exit code, what it printed."""

    seconds: float
    rss_mb: float
    code: int
    output: str = field(repr=False)


@dataclass
class Series:
    """Repeated runs of one command: medians are what the table shows."""

    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, run: Run) -> Run:
        self.seconds.append(round(run.seconds, 3))
        self.rss_mb.append(round(run.rss_mb, 1))
        return run

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_rss(self) -> float:
        return statistics.median(self.rss_mb)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_seconds": self.median, "median_rss_mb": self.median_rss}


def run_child(command: Sequence[str], env: dict[str, str], check: bool = True) -> Run:
    """Run a command to completion from the project root; peak RSS from wait4.

    Linux carries a forked child's high-water RSS over its exec, so a child's
    peak is at least this process's RSS at the fork: this process therefore
    imports nothing heavy and leaves data generation and the API to children.
    """
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        child = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=out, stderr=out, text=True
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if check and child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{output[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, child.returncode, output)


class Bench:
    """The work folder, the samples and the environment every child runs with."""

    def __init__(self, rows: int, repeat: int, pipeline_repeat: int, work: Path) -> None:
        self.rows = rows
        self.repeat = repeat
        self.pipeline_repeat = pipeline_repeat
        self.work = work
        self.csv_inbox = work / "csv"
        self.inbox = work / "stream"
        self.orders_inbox = work / "orders"
        self.python = sys.executable
        self.dbt = str(Path(sys.executable).with_name("dbt"))
        self.results: dict[str, Any] = {}
        self._warehouses = 0

    def env(self, warehouse: Path) -> dict[str, str]:
        return {
            **os.environ,
            "WAREHOUSE_PATH": str(warehouse),
            "DBT_PROFILES_DIR": str(ROOT / "profiles"),
            # One target folder for the whole benchmark, as a user has one: dbt re-parses
            # only what changed (partial parse), which is what a user's runs cost.
            "DBT_TARGET_PATH": str(self.work / "target"),
            "DBT_LOG_PATH": str(self.work / "logs"),
            "SOURCES__ORDERS__API_TOKEN": TOKEN,
        }

    def fresh_warehouse(self) -> Path:
        """A new, empty folder for one warehouse (and its dlt state, dbt target)."""
        self._warehouses += 1
        folder = self.work / f"w{self._warehouses:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder / "warehouse.duckdb"

    def drop(self, warehouse: Path) -> None:
        shutil.rmtree(warehouse.parent, ignore_errors=True)

    # ---------------------------------------------------------------- samples

    def _generate(
        self, out: Path, users: int, events_per_user: int, segment_size: int, orders_per_user: int
    ) -> dict[str, Any]:
        command = [
            self.python,
            "-m",
            "demo.generator",
            "--out",
            str(out),
            "--users",
            str(users),
            "--seed",
            str(SEED),
            "--events-per-user",
            str(events_per_user),
            "--segment-size",
            str(segment_size),
            "--orders-per-user",
            str(orders_per_user),
        ]
        run_child(command, dict(os.environ))
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))

    def generate(self, parts: set[str]) -> dict[str, Any]:
        """CSV sample: `rows` users (two exports); stream sample: `rows` events, rows/10 users.

        The CSV sample is made only when the CSV benchmark runs (at 10M rows it is
        10M users), the orders sample only for the pipeline.
        """
        started = time.perf_counter()
        sample: dict[str, Any] = {}
        if parts & {"csv", "users"}:
            csv = self._generate(self.csv_inbox, self.rows, 1, max(SEGMENT_SIZE, self.rows), 0)
            sample["csv"] = {
                "users": self.rows,
                "csv_rows": csv["users"]["csv_rows"],
                "bytes": _size(self.csv_inbox / "users"),
            }
        if parts & {"jsonl", "pipeline", "peers"}:
            sample.update(self._generate_stream("pipeline" in parts))
        sample["seconds"] = round(time.perf_counter() - started, 1)
        return sample

    def _generate_stream(self, with_orders: bool) -> dict[str, Any]:
        users = max(self.rows // EVENTS_PER_USER, 1)
        stream = self._generate(self.inbox, users, EVENTS_PER_USER, SEGMENT_SIZE, 0)
        orders = {"orders": {"rows": 0}}
        if with_orders:
            orders = self._generate(self.orders_inbox, ORDERS_SAMPLE_USERS, 1, SEGMENT_SIZE, 2)
        return {
            "stream": {
                "users": users,
                "csv_rows": stream["users"]["csv_rows"],
                "event_lines": stream["events"]["lines"],
                "segments": len(stream["events"]["segments"]),
                "orders": orders["orders"]["rows"],
                "products": stream["products"]["rows"],
                "bytes": _size(self.inbox / "events"),
            },
        }

    # ---------------------------------------------------------------- rows

    def startup(self) -> dict[str, Any]:
        """What every command pays before any work: `python -m ingestion --help`."""
        ours, bare = Series(), Series()
        env = self.env(self.work / "unused.duckdb")
        for _ in range(self.repeat):
            ours.add(run_child([self.python, "-m", "ingestion", "--help"], env))
            bare.add(run_child([self.python, "-c", "import duckdb"], env))
        return {"ingestion_cli": ours.as_dict(), "python_duckdb": bare.as_dict()}

    def csv_ingest(self, rows: int) -> dict[str, Any]:
        ours, floor, dlt_floor, pandas = Series(), Series(), Series(), Series()
        for _ in range(self.repeat):
            warehouse = self.fresh_warehouse()
            command = [self.python, "-m", "ingestion", "users", "--inbox", str(self.csv_inbox)]
            ours.add(run_child(command, self.env(warehouse)))
            self.drop(warehouse)
            for series, name in (
                (floor, "duckdb-csv"),
                (dlt_floor, "dlt-csv"),
                (pandas, "pandas-csv"),
            ):
                warehouse = self.fresh_warehouse()
                series.add(self._baseline(name, self.csv_inbox, warehouse))
                self.drop(warehouse)
        return {
            "rows": rows,
            "ours": ours.as_dict(),
            "duckdb": floor.as_dict(),
            "dlt": dlt_floor.as_dict(),
            "pandas": pandas.as_dict(),
        }

    def stream_ingest(self, lines: int) -> dict[str, Any]:
        ours, floor, dlt_floor = Series(), Series(), Series()
        for _ in range(self.repeat):
            warehouse = self.fresh_warehouse()
            command = [self.python, "-m", "ingestion", "events", "--inbox", str(self.inbox)]
            ours.add(run_child(command, self.env(warehouse)))
            self.drop(warehouse)
            for series, name in ((floor, "duckdb-json"), (dlt_floor, "dlt-json")):
                warehouse = self.fresh_warehouse()
                series.add(self._baseline(name, self.inbox, warehouse))
                self.drop(warehouse)
        return {
            "rows": lines,
            "ours": ours.as_dict(),
            "duckdb": floor.as_dict(),
            "dlt": dlt_floor.as_dict(),
        }

    def users_chain(self, rows: int) -> dict[str, Any]:
        """`python -m ingestion users` + `dbt build` of the users chain vs the pandas reference
        of the same cleaning (dim_users) on the same exports; peak RSS is the larger step's."""
        ours, ingest, build, pandas, floor = Series(), Series(), Series(), Series(), Series()
        # parsed once beforehand, as a user's project is: each build re-parses what changed
        run_child([self.dbt, "parse", "--project-dir", str(ROOT)], self.env(self.work / "p.duckdb"))
        for _ in range(self.repeat):
            warehouse = self.fresh_warehouse()
            env = self.env(warehouse)
            command = [self.python, "-m", "ingestion", "users", "--inbox", str(self.csv_inbox)]
            loaded = ingest.add(run_child(command, env))
            command = [self.dbt, "build", "--project-dir", str(ROOT), *USERS_CHAIN]
            built = build.add(run_child(command, env))
            ours.add(
                Run(
                    loaded.seconds + built.seconds,
                    max(loaded.rss_mb, built.rss_mb),
                    0,
                    built.output,
                )
            )
            self.drop(warehouse)
            pandas.add(self.reference("pandas", self.csv_inbox, warehouse, "--users-only"))
            floor.add(self.reference("duckdb", self.csv_inbox, warehouse, "--users-only"))
        return {
            "rows": rows,
            "ours": ours.as_dict(),
            "steps": {"ingest": ingest.as_dict(), "dbt_build": build.as_dict()},
            "pandas": pandas.as_dict(),
            "duckdb": floor.as_dict(),
        }

    def reference(self, engine: str, inbox: Path, warehouse: Path, *args: str) -> Run:
        """benchmarks/<engine>_reference.py on `inbox`: the same transforms in pandas, or in
        one DuckDB process (the floor)."""
        out = self.work / f"{engine}-reference"
        command = [self.python, "-m", f"benchmarks.{engine}_reference", *args]
        command += ["--inbox", str(inbox), "--out", str(out)]
        try:
            return run_child(command, self.env(warehouse))
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def peers(self) -> dict[str, Any]:
        """Ours vs what a dlt user gets out of the box, once each, on the pipeline sample.

        dlt's `filesystem` source with its `read_csv` (pandas), `read_csv_duckdb`
        and `read_jsonl` readers into the same destination; a reader that fails on
        the sample is reported with its error.
        """
        out: dict[str, Any] = {}
        ours: dict[str, Run] = {}
        for reader, source in PEERS:
            if source not in ours:
                warehouse = self.fresh_warehouse()
                command = [self.python, "-m", "ingestion", source, "--inbox", str(self.inbox)]
                ours[source] = run_child(command, self.env(warehouse))
                self.drop(warehouse)
            warehouse = self.fresh_warehouse()
            command = [self.python, "-m", "benchmarks.baselines", f"dlt-fs-{reader}"]
            command += ["--inbox", str(self.inbox), "--db", str(warehouse)]
            peer = run_child(command, self.env(warehouse), check=False)
            self.drop(warehouse)
            lines = peer.output.strip().splitlines() or [""]
            out[reader] = {
                "source": source,
                "ours": {"seconds": round(ours[source].seconds, 3), "rss_mb": ours[source].rss_mb},
                "peer": {
                    "seconds": round(peer.seconds, 3),
                    "rss_mb": peer.rss_mb,
                    "failed": peer.code != 0,
                    "error": lines[-1][-300:] if peer.code else None,
                    "rows": json.loads(lines[-1])["rows"] if not peer.code else None,
                },
            }
        return out

    def _baseline(self, name: str, inbox: Path, warehouse: Path) -> Run:
        command = [
            self.python,
            "-m",
            "benchmarks.baselines",
            name,
            "--inbox",
            str(inbox),
            "--db",
            str(warehouse),
        ]
        return run_child(command, self.env(warehouse))

    def pipeline_steps(
        self, warehouse: Path, url: str, env: dict[str, str] | None = None
    ) -> dict[str, Run]:
        """`python -m pipeline run --no-publish`: ingest -> dbt build -> monitor, as users run it.

        The whole run is one child (its wall time and peak RSS are the run's); the
        steps' seconds come from the run's summary table. The build is what the
        pipeline decides to build: everything on the first run, then what the new
        rows reach (pipeline/scope.py).
        """
        command = [
            self.python,
            "-m",
            "pipeline",
            "run",
            "--no-publish",
            "--verbose",  # the children's output: ingestion's summary has its seconds per source
            "--inbox",
            str(self.inbox),
            "--api-url",
            url,
        ]
        run = run_child(command, {**self.env(warehouse), **(env or {})}, check=False)
        steps = _step_results(run.output)
        # exit 1 with the monitor failed = an error-level quality alert, which the
        # sample's planted defects may raise; any other failure is a broken benchmark
        passed = steps.get("ingest", ("",))[0] == steps.get("build", ("",))[0] == "ok"
        if not passed or steps.get("monitor", ("",))[0] not in ("ok", "failed", "skipped"):
            raise RuntimeError(f"{' '.join(command)} failed:\n{run.output[-3000:]}")
        runs = {
            name: Run(steps[step][1], run.rss_mb, 0, run.output)
            for name, step in (("ingest", "ingest"), ("dbt_build", "build"), ("monitor", "monitor"))
        }
        return {"total": run, **runs}

    def pipeline(self, events: int) -> dict[str, Any]:
        """Full pipeline vs the pandas reference, then 1% new events, then the monitor probe."""
        total, pandas, floor = Series(), Series(), Series()
        steps: dict[str, Series] = {}
        ingest_sources: list[dict[str, float]] = []
        warehouse = self.work / "none"
        with self.orders_api() as url:
            for rep in range(self.pipeline_repeat):
                if rep:
                    self.drop(warehouse)
                warehouse = self.fresh_warehouse()
                runs = self.pipeline_steps(warehouse, url)
                total.add(runs.pop("total"))
                for name, step in runs.items():
                    steps.setdefault(name, Series()).add(step)
                ingest_sources.append(_source_seconds(runs["ingest"].output))
                pandas.add(self.reference("pandas", self.inbox, warehouse))
                floor.add(self.reference("duckdb", self.inbox, warehouse))

            probe = self.monitor_probe(warehouse)
            incremental = self.incremental(warehouse, url, events)
            incremental["fixed"] = self.fixed_costs(warehouse, url)
            self.drop(warehouse)
            incremental["hundredth"] = self.hundredth_incremental(url)
        return {
            "pipeline": {
                "rows": events,
                "ours": total.as_dict(),
                "pandas": pandas.as_dict(),
                "duckdb": floor.as_dict(),
                "steps": {k: v.as_dict() for k, v in steps.items()},
                "ingest_seconds_by_source": ingest_sources,
            },
            "incremental": incremental,
            "monitor": probe,
        }

    @contextmanager
    def orders_api(self) -> Iterator[str]:
        """The demo orders API as a child process; yields its base URL."""
        command = [
            self.python,
            "-m",
            "demo.api",
            "--data",
            str(self.orders_inbox),
            "--port",
            "0",
            "--token",
            TOKEN,
            "--quiet",
        ]
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline() if server.stdout else ""
            match = re.search(r"serving on (\S+)", line)
            if not match:
                raise RuntimeError(f"the demo orders API did not start: {line!r}")
            yield match.group(1)
        finally:
            server.terminate()
            server.wait(timeout=30)

    def incremental(self, warehouse: Path, url: str, events: int) -> dict[str, Any]:
        """Add 1% new events as one more segment and run the pipeline again, per repetition."""
        total = Series()
        steps: dict[str, Series] = {}
        added = max(int(events * INCREMENT), 1)
        segments = sorted((self.inbox / "events").glob("events-*.jsonl"))
        written, scopes, slowest = [], [], []
        try:
            for rep in range(self.pipeline_repeat):
                number = len(segments) + rep + 1
                path = self.inbox / "events" / f"events-{number:06d}.jsonl"
                _write_new_events(path, added, first_id=10_000_000_000 + rep * added)
                written.append(path)
                began = datetime.now(UTC)
                runs = self.pipeline_steps(warehouse, url)
                slowest.append(nodes_built_since(self.work / "target", began))
                # the build step's line ends with the scope it chose, in parentheses
                found = re.search(
                    r"^build\s+ok\s+[\d.]+s\s+.*\(([^()]+)\)$", runs["total"].output, re.MULTILINE
                )
                scopes.append(found.group(1) if found else "?")
                total.add(runs.pop("total"))
                for name, step in runs.items():
                    steps.setdefault(name, Series()).add(step)
        finally:
            for path in written:
                path.unlink(missing_ok=True)
        return {
            "rows_added": added,
            "build_scope": scopes,  # what the pipeline chose to rebuild, per repetition
            "slowest_nodes": slowest,  # where that build spent, per repetition
            "ours": total.as_dict(),
            "steps": {k: v.as_dict() for k, v in steps.items()},
        }

    def hundredth_incremental(self, url: str) -> dict[str, Any]:
        """The same 1% run on a warehouse of a hundredth of the events: a run whose nodes
        read next to nothing, so what it costs is the fixed part of every 1% run (the
        processes, dlt's and dbt's work per source and per node, the ledger)."""
        small = Bench(max(self.rows // 100, 1_000), 1, self.pipeline_repeat, self.work / "small")
        events = small.generate({"jsonl"})["stream"]["event_lines"]  # orders: this run's API
        warehouse = small.fresh_warehouse()
        try:
            small.pipeline_steps(warehouse, url)  # the first build
            return {"events": events, **small.incremental(warehouse, url, events)}
        finally:
            shutil.rmtree(small.work, ignore_errors=True)

    def fixed_costs(self, warehouse: Path, url: str) -> dict[str, Any]:
        """What a run pays with no new data, and its parts.

        `python -m pipeline run` with nothing new (no build: nothing to rebuild;
        no monitor: the run before passed on this warehouse); then the parts
        that any run pays: `python -m ingestion` when no source has anything new (the samples
        are loaded, the API has no newer order), and `dbt build` selecting no
        node (start-up, parse, manifest). That dbt invocation comes last: the
        pipeline rebuilds everything after a dbt run it did not make.
        """
        ingest, dbt, nothing_new, not_due = Series(), Series(), Series(), Series()
        env = self.env(warehouse)
        # first a run that notices the incremental run's segments gone (the folder changed,
        # so the events source runs once), as a scheduled run after a cleanup would
        self.pipeline_steps(warehouse, url)
        for _ in range(self.repeat):
            run = nothing_new.add(self.pipeline_steps(warehouse, url)["total"])
            if "nothing to rebuild" not in run.output:
                raise RuntimeError(f"a run with nothing new built something:\n{run.output[-2000:]}")
        # the orders API with ask_every (docs/sources.md): another declaration, so every
        # source runs once and is recorded, then the API is not due
        ask_every = {"SOURCES__ORDERS__ASK_EVERY": "1h"}
        self.pipeline_steps(warehouse, url, ask_every)
        for _ in range(self.repeat):
            run = not_due.add(self.pipeline_steps(warehouse, url, ask_every)["total"])
            if "nothing to rebuild" not in run.output or "| orders | not due |" not in run.output:
                raise RuntimeError(f"a run with nothing due did something:\n{run.output[-2000:]}")
        command = [self.python, "-m", "ingestion", "--inbox", str(self.inbox), "--api-url", url]
        run_child(command, env)  # the declarations as before: each source recorded again
        for _ in range(self.repeat):
            run = ingest.add(run_child(command, env))
            loaded = {source: cells[3] for source, cells in _source_rows(run.output).items()}
            if set(loaded) != set(declared_source_names()) or set(loaded.values()) != {"0"}:
                raise RuntimeError(f"an ingest with nothing new loaded rows: {loaded}")
            command = [self.dbt, "build", "--project-dir", str(ROOT), "--select", NO_NODE]
            dbt.add(run_child(command, env))
        return {
            "pipeline_run_nothing_new": nothing_new.as_dict(),
            "pipeline_run_nothing_due": not_due.as_dict(),
            "ingest_nothing_new": ingest.as_dict(),
            "dbt_build_no_node": dbt.as_dict(),
        }

    def monitor_probe(self, warehouse: Path) -> dict[str, Any]:
        env = self.env(warehouse)
        command = [
            self.python,
            "-m",
            "benchmarks.baselines",
            "monitor-probe",
            "--target-dir",
            env["DBT_TARGET_PATH"],
            "--repeat",
            str(max(self.repeat, 3)),
        ]
        return json.loads(run_child(command, env).output.strip().splitlines()[-1])


def nodes_built_since(target: Path, began: datetime, top: int = 12) -> dict[str, float]:
    """The `top` slowest nodes of the dbt build that started after `began` (its
    run_results.json also holds, carried over, the results of the nodes it did not run)."""
    results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    built = {}
    for result in results.get("results") or []:
        starts = [t["started_at"] for t in result.get("timing") or [] if t.get("started_at")]
        if starts and datetime.fromisoformat(min(starts).replace("Z", "+00:00")) >= began:
            built[result["unique_id"].split(".", 2)[-1]] = round(result["execution_time"], 2)
    return dict(sorted(built.items(), key=lambda item: -item[1])[:top])


def _step_results(output: str) -> dict[str, tuple[str, float]]:
    """step -> (status, seconds) from `python -m pipeline run`'s line per step."""
    return {
        match[1]: (match[2], float(match[3]))
        for match in re.finditer(r"^(\w+)\s+(ok|failed|skipped)\s+([\d.]+)s\b", output, re.M)
    }


def _source_rows(summary: str) -> dict[str, list[str]]:
    """Per-source cells of `python -m ingestion`'s summary table (source, status, read,
    loaded, rejected, collapsed, unchanged, new columns, seconds)."""
    found = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and re.fullmatch(r"[\d.]+", cells[-1]):
            found[cells[0]] = cells
    return found


def _source_seconds(summary: str) -> dict[str, float]:
    return {source: float(cells[-1]) for source, cells in _source_rows(summary).items()}


def _write_new_events(path: Path, count: int, first_id: int) -> None:
    """`count` new events (new ids, on time) as one more stream segment."""
    categories = ("click", "view", "search", "add_to_cart", "purchase")
    lines = [
        json.dumps(
            {
                "event_id": f"evt-{first_id + i}",
                "user_id": 1 + i % 97,
                "category": categories[i % 5],
                "value": round(1.0 + (i % 50) / 10, 2),
                "occurred_at": f"2026-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


# -------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as info:
        mem_kb = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    versions = {}
    for package in ("duckdb", "dlt", "dbt-core", "dbt-duckdb", "pandas", "pyarrow"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - a missing package is just not listed
            continue
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


TARGETS = {
    "csv_ingest": ("≤ 2.2× DuckDB native at 10M", 2.2),
    "stream_ingest": ("≤ 2.0× DuckDB native at 10M", 2.0),
    "stream_rss": ("≤ 1 GB at 10M events", 1024.0),
    "pipeline_time": ("≤ 0.6× pandas at 10M", 0.6),
    "pipeline_rss": ("≤ 0.2× pandas peak RSS at 10M", 0.2),
    "incremental": ("≤ 12% of full run at 10M", 0.12),
    "nothing_new": ("≤ 1.5 s", 1.5),
    "pipeline_floor_10m": ("≤ 2.5× the DuckDB-only reference at 10M", 2.5),
    "pipeline_floor_1m": ("≤ 5× the DuckDB-only reference at 1M", 5.0),
    "users_time": ("≤ 1× pandas", 1.0),
    "users_rss": ("≤ 0.4× pandas peak RSS", 0.4),
    "peer": ("ours faster", 1.0),
    "monitor": ("≤ 3 scans", 3.0),
}


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per comparison: ours, the baseline, the ratio, the target."""
    startup = results["startup"]["ingestion_cli"]["median_seconds"]
    reps, preps = results["params"]["repeat"], results["params"]["pipeline_repeat"]

    rows = []

    def add(
        row_id: str,
        key: str | None,
        name: str,
        ours: str,
        baseline: str,
        ratio: float,
        note: str,
        judged: float | None = None,
    ) -> None:
        """`judged` is what the target limits when it is not the ratio (peak RSS in MB)."""
        target, limit = TARGETS[key] if key else ("-", None)
        rows.append(
            {
                "id": row_id,
                "benchmark": name,
                "ours": ours,
                "baseline": baseline,
                "ratio": round(ratio, 3),
                "target": target,
                "met": None
                if limit is None
                else bool((ratio if judged is None else judged) <= limit),
                "note": note,
            }
        )

    if "csv_ingest" in results:
        csv_rows(add, results["csv_ingest"], startup, reps)
    if "stream_ingest" in results:
        stream_rows(add, results["stream_ingest"], startup, reps)
    if "users_chain" in results:
        users_rows(add, results["users_chain"], reps)
    if "pipeline" in results:
        pipeline_rows(add, results, reps, preps)
    if "peers" in results:
        peer_rows(add, results["peers"])
    add(
        "startup",
        None,
        "Start-up: `python -m ingestion --help`",
        f"{startup:.2f} s",
        f"python -c 'import duckdb' {results['startup']['python_duckdb']['median_seconds']:.2f} s",
        startup / results["startup"]["python_duckdb"]["median_seconds"],
        "included in every command's time above",
    )
    return rows


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s"


def csv_rows(add: Any, csv: dict[str, Any], startup: float, reps: int) -> None:
    c_ours, c_floor = csv["ours"]["median_seconds"], csv["duckdb"]["median_seconds"]
    c_pandas = csv["pandas"]["median_seconds"]
    add(
        "csv_ingest",
        "csv_ingest",
        f"CSV ingest, {csv['rows']:,} users rows",
        f"{c_ours:.2f} s ({rate(csv['rows'], c_ours)})",
        f"DuckDB read_csv {c_floor:.2f} s ({rate(csv['rows'], c_floor)})",
        c_ours / c_floor,
        f"without start-up: {(c_ours - startup) / c_floor:.2f}×; median of {reps}",
    )
    c_dlt = csv["dlt"]["median_seconds"]
    add(
        "csv_ingest_dlt",
        None,
        "CSV ingest, dlt's floor (DuckDB parses, dlt loads)",
        f"{c_dlt:.2f} s",
        f"DuckDB read_csv {c_floor:.2f} s",
        c_dlt / c_floor,
        f"no lineage, rejects or checks; ours is {c_ours / c_dlt:.2f}× this; median of {reps}",
    )
    add(
        "csv_ingest_pandas",
        None,
        "CSV ingest vs pandas",
        f"{c_ours:.2f} s",
        f"pandas read_csv + DuckDB {c_pandas:.2f} s ({rate(csv['rows'], c_pandas)})",
        c_ours / c_pandas,
        f"median of {reps}",
    )


def stream_rows(add: Any, stream: dict[str, Any], startup: float, reps: int) -> None:
    s_ours, s_floor = stream["ours"]["median_seconds"], stream["duckdb"]["median_seconds"]
    add(
        "stream_ingest",
        "stream_ingest",
        f"JSONL ingest, {stream['rows']:,} event lines",
        f"{s_ours:.2f} s ({rate(stream['rows'], s_ours)})",
        f"DuckDB read_json {s_floor:.2f} s ({rate(stream['rows'], s_floor)})",
        s_ours / s_floor,
        f"without start-up: {(s_ours - startup) / s_floor:.2f}×; median of {reps}",
    )
    s_dlt = stream["dlt"]["median_seconds"]
    add(
        "stream_ingest_dlt",
        None,
        "JSONL ingest, dlt's floor (DuckDB parses, dlt loads)",
        f"{s_dlt:.2f} s",
        f"DuckDB read_json {s_floor:.2f} s",
        s_dlt / s_floor,
        f"no lineage, rejects or dedupe; ours is {s_ours / s_dlt:.2f}× this; median of {reps}",
    )
    rss = stream["ours"]["median_rss_mb"]
    add(
        "stream_rss",
        "stream_rss" if stream["rows"] >= 10_000_000 else None,
        f"JSONL ingest peak RSS, {stream['rows']:,} lines",
        f"{rss:,.0f} MB",
        f"DuckDB read_json {stream['duckdb']['median_rss_mb']:,.0f} MB",
        rss / stream["duckdb"]["median_rss_mb"],
        "target applies at 10M events" if stream["rows"] < 10_000_000 else "",
        judged=rss,
    )


def users_rows(add: Any, users: dict[str, Any], reps: int) -> None:
    u_ours, u_pandas = users["ours"]["median_seconds"], users["pandas"]["median_seconds"]
    steps = users["steps"]
    add(
        "users_time",
        "users_time",
        f"Users chain, {users['rows']:,} users rows",
        f"{u_ours:.1f} s (ingest {steps['ingest']['median_seconds']:.1f} + dbt build "
        f"{steps['dbt_build']['median_seconds']:.1f})",
        f"pandas reference (dim_users) {u_pandas:.1f} s",
        u_ours / u_pandas,
        f"median of {reps}; ours also keeps rejects and lineage, builds quarantine_users, "
        f"versions and tests; {floor_ratio(u_ours, users)}",
    )
    add(
        "users_rss",
        "users_rss",
        "Users chain peak RSS",
        f"{users['ours']['median_rss_mb']:,.0f} MB (larger step)",
        f"pandas reference {users['pandas']['median_rss_mb']:,.0f} MB",
        users["ours"]["median_rss_mb"] / users["pandas"]["median_rss_mb"],
        f"median of {reps}",
    )


def floor_ratio(seconds: float, part: dict[str, Any]) -> str:
    """`seconds` against the DuckDB-only reference of the same transforms, in words."""
    floor = part["duckdb"]["median_seconds"]
    return f"{seconds / floor:.2f}× the DuckDB-only reference ({floor:.1f} s)"


def pipeline_rows(add: Any, results: dict[str, Any], reps: int, preps: int) -> None:
    pipe, inc, mon = results["pipeline"], results["incremental"], results["monitor"]
    p_ours, p_pandas = pipe["ours"]["median_seconds"], pipe["pandas"]["median_seconds"]
    p_floor = pipe["duckdb"]["median_seconds"]
    steps = pipe["steps"]
    add(
        "pipeline_time",
        "pipeline_time",
        f"Full pipeline, {pipe['rows']:,} events",
        f"{p_ours:.1f} s (ingest {steps['ingest']['median_seconds']:.1f} + dbt build "
        f"{steps['dbt_build']['median_seconds']:.1f} + monitor "
        f"{steps['monitor']['median_seconds']:.1f})",
        f"pandas reference {p_pandas:.1f} s",
        p_ours / p_pandas,
        f"median of {preps}; ours also loads orders + products, runs tests, quarantine, "
        f"monitor; {floor_ratio(p_ours, pipe)}",
    )
    at_10m = pipe["rows"] >= 10_000_000
    add(
        "pipeline_floor",
        "pipeline_floor_10m" if at_10m else "pipeline_floor_1m" if pipe["rows"] >= 1e6 else None,
        f"Full pipeline vs the DuckDB-only reference, {pipe['rows']:,} events",
        f"{p_ours:.1f} s",
        f"the same transforms in one DuckDB process {p_floor:.1f} s",
        p_ours / p_floor,
        f"median of {preps}; the floor reads, dedupes, cleans and builds the three marts the "
        "pandas reference does, nothing else",
    )
    add(
        "pipeline_rss",
        "pipeline_rss",
        "Full pipeline peak RSS",
        f"{pipe['ours']['median_rss_mb']:,.0f} MB (largest step)",
        f"pandas reference {pipe['pandas']['median_rss_mb']:,.0f} MB",
        pipe["ours"]["median_rss_mb"] / pipe["pandas"]["median_rss_mb"],
        f"median of {preps}",
    )
    i_ours = inc["ours"]["median_seconds"]
    add(
        "incremental",
        "incremental",
        f"Incremental: +{inc['rows_added']:,} events (1%)",
        f"{i_ours:.1f} s (ingest {inc['steps']['ingest']['median_seconds']:.1f} + dbt build "
        f"{inc['steps']['dbt_build']['median_seconds']:.1f} + monitor "
        f"{inc['steps']['monitor']['median_seconds']:.1f})",
        f"full run {p_ours:.1f} s",
        i_ours / p_ours,
        f"median of {preps}; {floor_ratio(i_ours, pipe)}",
    )
    if "hundredth" in inc:  # results from before it have none
        small = inc["hundredth"]
        s_ours = small["ours"]["median_seconds"]
        add(
            "incremental_hundredth",
            None,
            f"Incremental on a hundredth of the events: +{small['rows_added']:,} events (1% "
            f"of {small['events']:,})",
            f"{s_ours:.1f} s (ingest {small['steps']['ingest']['median_seconds']:.1f} + dbt "
            f"build {small['steps']['dbt_build']['median_seconds']:.1f} + monitor "
            f"{small['steps']['monitor']['median_seconds']:.1f})",
            f"full run {p_ours:.1f} s",
            s_ours / p_ours,
            f"the same run whose nodes read a hundredth of the rows: the fixed part of the 1% "
            f"run above, the floor of its share; median of {preps}",
        )
    fixed = inc["fixed"]
    f_ingest = fixed["ingest_nothing_new"]["median_seconds"]
    f_dbt = fixed["dbt_build_no_node"]["median_seconds"]
    add(
        "incremental_fixed",
        None,
        "Incremental, its fixed part: nothing new",
        f"{f_ingest + f_dbt:.1f} s (ingest {f_ingest:.1f} + dbt build of no node {f_dbt:.1f})",
        f"full run {p_ours:.1f} s",
        (f_ingest + f_dbt) / p_ours,
        f"each command typed alone; in a run with new rows dbt's import and warm-up overlap "
        f"the ingest (the run's dbt child); median of {reps}",
    )
    nothing = fixed["pipeline_run_nothing_new"]["median_seconds"]
    add(
        "nothing_new",
        "nothing_new",
        "A run with nothing new (`python -m pipeline run --no-publish`)",
        f"{nothing:.1f} s",
        f"full run {p_ours:.1f} s",
        nothing / p_ours,
        f"ingest of every source with something to ask (a file source with nothing new is not "
        f"run), no build, no monitor; median of {reps}; {floor_ratio(nothing, pipe)}",
        judged=nothing,
    )
    if "pipeline_run_nothing_due" in fixed:  # results from before ask_every have none
        quiet = fixed["pipeline_run_nothing_due"]["median_seconds"]
        add(
            "nothing_due",
            "nothing_new",
            "A run with nothing new, the orders API within its `ask_every`",
            f"{quiet:.1f} s",
            f"full run {p_ours:.1f} s",
            quiet / p_ours,
            f"no source asked (SOURCES__ORDERS__ASK_EVERY=1h), no dlt pipeline, no build, "
            f"no monitor; median of {reps}",
            judged=quiet,
        )
    add(
        "monitor",
        "monitor",
        f"Monitor on {mon['table']} ({mon['rows']:,} rows, {mon['columns']} cols)",
        f"{mon['monitor_seconds'] * 1000:.0f} ms ({mon['monitor_scans']} queries)",
        f"scan of every column {mon['column_scan_seconds'] * 1000:.0f} ms; "
        f"count(*) {mon['count_seconds'] * 1000:.1f} ms",
        mon["monitor_seconds"] / mon["column_scan_seconds"],
        f"vs count(*): {mon['monitor_seconds'] / mon['count_seconds']:.0f}×; median of "
        f"{max(reps, 3)}",
    )


def peer_rows(add: Any, peers: dict[str, Any]) -> None:
    for reader, p in peers.items():
        ours, peer = p["ours"], p["peer"]
        if peer["failed"]:
            baseline = f"fails after {peer['seconds']:.1f} s: {peer['error'][:160]}"
            ratio = 0.0
        else:
            baseline = f"{peer['seconds']:.2f} s, {peer['rss_mb']:,.0f} MB, {peer['rows']:,} rows"
            ratio = ours["seconds"] / peer["seconds"]
        add(
            f"peer_{reader}",
            "peer",
            f"{p['source']}: dlt `filesystem` + `{reader}`, as dlt ships it",
            f"{ours['seconds']:.2f} s, {ours['rss_mb']:,.0f} MB",
            baseline,
            ratio,
            "once each, the pipeline sample's files; ours with lineage, rejects and checks",
        )


def markdown(rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Benchmarks at --rows {results['params']['rows']:,} on {m['cpus']} × {m['cpu']}, "
        f"{m['memory_gb']} GB RAM, Python {m['python']}, DuckDB {m['versions'].get('duckdb')}, "
        f"dlt {m['versions'].get('dlt')}, dbt-duckdb {m['versions'].get('dbt-duckdb')} "
        f"({results['date']}, load average at start {m['load_average_at_start'][0]:.1f})",
        "",
        "| benchmark | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        note = f" ({r['note']})" if r["note"] else ""
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "-"
        lines.append(
            f"| {r['benchmark']} | {r['ours']} | {r['baseline']} | {ratio}{note} "
            f"| {r['target']} | {met} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="users CSV rows and stream events (default 1,000,000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions per measurement; medians are reported (default 3)",
    )
    parser.add_argument(
        "--pipeline-repeat",
        type=int,
        help="repetitions of the full and incremental pipeline "
        "(default: --repeat, but 1 from 500,000 rows up)",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="comma-separated parts to run, of " + ", ".join(PARTS) + " (default: all); "
        "e.g. --rows 10000000 --only jsonl,pipeline for the 10M targets",
    )
    parser.add_argument(
        "--work", type=Path, help="scratch folder for samples and warehouses (default: a temp dir)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where <date>-<rows>.json goes (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.repeat < 1:
        parser.error("--rows must be >= 1000 and --repeat >= 1")
    args.only = {part.strip() for part in args.only.split(",") if part.strip()}
    if not args.only or not args.only <= set(PARTS):
        parser.error(f"--only takes a comma-separated list of {', '.join(PARTS)}")
    if args.pipeline_repeat is None:
        args.pipeline_repeat = 1 if args.rows >= 500_000 else args.repeat
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ml-warehouse-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(args.rows, args.repeat, args.pipeline_repeat, work)
        results: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "params": {
                "rows": args.rows,
                "repeat": args.repeat,
                "pipeline_repeat": args.pipeline_repeat,
                "seed": SEED,
                "segment_size": SEGMENT_SIZE,
                "events_per_user": EVENTS_PER_USER,
                "only": sorted(args.only),
            },
            "machine": machine(),
        }

        def step(name: str, work_fn: Any, *fn_args: Any) -> Any:
            started = time.perf_counter()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            value = work_fn(*fn_args)
            print(
                f"bench: {name} done in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            return value

        sample = step("generate samples", bench.generate, args.only)
        results["sample"] = sample
        results["startup"] = step("start-up", bench.startup)
        if "csv" in args.only:
            results["csv_ingest"] = step("CSV ingest", bench.csv_ingest, sample["csv"]["csv_rows"])
        if "jsonl" in args.only:
            results["stream_ingest"] = step(
                "JSONL ingest", bench.stream_ingest, sample["stream"]["event_lines"]
            )
        if "users" in args.only:
            results["users_chain"] = step(
                "users chain", bench.users_chain, sample["csv"]["csv_rows"]
            )
        if "peers" in args.only:
            results["peers"] = step("dlt's filesystem readers", bench.peers)
        if "pipeline" in args.only:
            results.update(
                step(
                    "pipeline, incremental, monitor",
                    bench.pipeline,
                    sample["stream"]["event_lines"],
                )
            )
    results["table"] = verdicts(results)
    results["total_seconds"] = round(time.perf_counter() - began, 1)
    table = markdown(results["table"], results)
    print(table)
    print(f"\n(total {results['total_seconds']:.0f} s)")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"{results['date'][:10]}-{args.rows}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

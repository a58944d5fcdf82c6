"""`python -m pipeline`: gated runs from the sources to a published analytics database.

    init      a new project of your own in an empty folder (dbt project, .dlt/config.toml)
    deps      link the tool's dbt package into the project (after a clone or a new venv)
    run       ingest -> dbt build -> monitor -> publish, stopping at the first failed gate
    status    the last runs from the ledger (monitoring.pipeline_runs)
    publish   monitor and publish the current marts (after a manual dbt build or a backfill)
    backfill  re-process an event-time range through the microbatch models, resumably
    features  export user features as of a time, or point-in-time for a label spine
    forget    erase users (right to erasure): every table, rebuild, republish, suppression list
    prune     drop the tables no current model builds (deleted, renamed, undeclared source)
    reset     remove the warehouse, dlt's state and the published file: start over
    serve     read-only HTTP feature API over the published user features, hot-swapped

Every step runs as a child process (see steps.py for why). Exit codes, like
the other commands: 0 success, 1 a gate failed or the warehouse is busy,
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import duckdb

from warehouse import audit, dbt_package
from warehouse.audit import redact
from warehouse.lock import SharedLock, lock_path, read_holder
from warehouse.settings import warehouse_file_problem, warehouse_path
from warehouse.sources import SourceDeclarationError, declared_source_names

from . import ledger
from .runner import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RunOptions,
    publish_only,
    run_pipeline,
)
from .scope import CadenceError, full_check_cadence
from .steps import Context, make_context

# What the serving extra (`pip install "ml-warehouse[serving]"`) adds: the feature API's imports.
SERVING_EXTRA = ("fastapi", "fastapi_offline", "uvicorn", "orjson", "pydantic", "starlette")


class UsageError(Exception):
    """Bad arguments: exit 2 with one line."""


def parse_interval(text: str) -> float:
    """`15m`, `1h`, `30s`, `1d` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise UsageError(f"interval {text!r}: use a number and a unit, e.g. 30s, 15m, 1h, 1d")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds <= 0:
        raise UsageError(f"interval {text!r} must be positive")
    return seconds


def _common(parser: argparse.ArgumentParser, wait: bool = True) -> None:
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path(os.environ.get("DBT_PROJECT_DIR", ".")),
        help="dbt project folder (default $DBT_PROJECT_DIR or .)",
    )
    if wait:
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait up to this long for another run to finish (default 0: exit 1 at once)",
        )
    parser.add_argument(
        "--verbose", action="store_true", help="show the steps' own output (dbt's line per node)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Orchestrate ingest -> dbt build -> monitor -> publish on the warehouse.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="a new project of your own in an empty folder")
    init.add_argument("path", type=Path, help="the folder to write (new, or empty)")
    init.add_argument("--name", help="the dbt project's name (default: the folder's, snake_case)")

    deps = commands.add_parser("deps", help="link the tool's dbt package into the project")
    deps.add_argument(
        "--project-dir",
        type=Path,
        default=Path(os.environ.get("DBT_PROJECT_DIR", ".")),
        help="dbt project folder (default $DBT_PROJECT_DIR or .)",
    )

    run = commands.add_parser("run", help="one gated run (or one every INTERVAL with --every)")
    run.add_argument(
        "--sources",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="declared sources to ingest (default: every one in .dlt/config.toml)",
    )
    run.add_argument("--select", help="dbt selector for the build step (default: everything)")
    run.add_argument("--vars", help="dbt --vars for the build step (YAML)")
    run.add_argument(
        "--inbox", help="root folder, one subfolder per file source (python -m ingestion)"
    )
    run.add_argument("--api-url", help="base URL of the rest_api sources (python -m ingestion)")
    run.add_argument(
        "--full-refresh", action="store_true", help="reload the sources and rebuild every model"
    )
    run.add_argument(
        "--full-check",
        action="store_true",
        help="build every model and run every test over whole tables (default: the first run "
        "of each day, [pipeline] full_check; other runs test the rows they added)",
    )
    run.add_argument(
        "--no-publish", action="store_true", help="run the gates but leave analytics as it is"
    )
    run.add_argument(
        "--every", metavar="INTERVAL", help="repeat every INTERVAL (15m, 1h) until stopped"
    )
    run.add_argument("--runs", type=int, help="with --every: stop after this many runs")
    _common(run)

    status = commands.add_parser("status", help="print the last runs from the ledger")
    status.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    _common(status, wait=False)

    publish = commands.add_parser(
        "publish", help="monitor and publish the current marts (after dbt build or a backfill)"
    )
    _common(publish)

    backfill = commands.add_parser(
        "backfill", help="re-process an event-time range through the microbatch models"
    )
    backfill.add_argument("--start", required=True, help="first day (2026-01-01) or timestamp")
    backfill.add_argument(
        "--end", required=True, help="last day, inclusive (2026-01-31), or an exclusive timestamp"
    )
    backfill.add_argument(
        "--batch", default="1d", help="range per dbt invocation, resume unit (1d, 6h, 7d)"
    )
    backfill.add_argument(
        "--select", help="dbt selector of the models to backfill (default: the microbatch models)"
    )
    backfill.add_argument("--vars", help="dbt --vars (YAML)")
    backfill.add_argument(
        "--restart", action="store_true", help="ignore finished batches of an interrupted backfill"
    )
    backfill.add_argument("--no-publish", action="store_true", help="skip monitor and publish")
    _common(backfill)

    features = commands.add_parser(
        "features", help="export user features (Parquet + manifest) from the published marts"
    )
    when = features.add_mutually_exclusive_group(required=True)
    when.add_argument("--as-of", help="features as of this ISO timestamp (UTC)")
    when.add_argument(
        "--spine", type=Path, help="CSV with user_id,label_ts: point-in-time features per row"
    )
    features.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    _common(features, wait=False)

    serve = commands.add_parser(
        "serve", help="read-only HTTP feature API over the published analytics database"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--analytics",
        type=Path,
        help="published file (default $ANALYTICS_PATH or beside the warehouse)",
    )
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.add_argument(
        "--poll", type=float, default=0.5, help="seconds between checks for a new publish"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    _common(serve, wait=False)

    forget = commands.add_parser(
        "forget",
        help="right to erasure: remove users everywhere, rebuild, republish, suppress them",
    )
    forget.add_argument(
        "--user-id",
        dest="user_ids",
        action="append",
        required=True,
        metavar="ID",
        help="a user to erase (repeat for several)",
    )
    forget.add_argument(
        "--vars", help="dbt --vars for the rebuild (YAML), e.g. a fixed features_as_of"
    )
    forget.add_argument(
        "--no-publish", action="store_true", help="erase and rebuild, but leave analytics as is"
    )
    _common(forget)

    prune = commands.add_parser(
        "prune", help="drop the tables no current model builds (deleted, renamed, undeclared)"
    )
    prune.add_argument("--dry-run", action="store_true", help="list them, drop nothing")
    _common(prune)

    reset = commands.add_parser(
        "reset", help="remove the warehouse, dlt's state and the published file: start over"
    )
    reset.add_argument("--yes", action="store_true", help="remove them (without: list them)")
    _common(reset)

    return parser


def _undeclared(sources: list[str]) -> str | None:
    """Why these sources cannot be run (None when each is declared)."""
    try:
        declared = declared_source_names()
    except SourceDeclarationError as error:
        return str(error)
    unknown = [name for name in sources if name not in declared]
    if not unknown:
        return None
    return (
        f"unknown source {unknown[0]!r}; the declared sources are "
        f"{', '.join(declared) or 'none'} (.dlt/config.toml)"
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help is 0, a bad option 2
        return int(exc.code or 0)
    if args.command in ("init", "deps"):
        return command_project(args)
    problem = _undeclared(getattr(args, "sources", []))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    problem = warehouse_file_problem(warehouse_path())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    arguments = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # systemd stop: end the current step cleanly
    ctx = make_context(warehouse_path(), args.project_dir, args.verbose)
    try:
        if args.command == "run":
            return command_run(args, ctx, arguments)
        if args.command == "status":
            return command_status(ctx, args.limit)
        if args.command == "publish":
            return publish_only(ctx, RunOptions(wait=args.wait, debug=args.debug), arguments)
        if args.command == "backfill":
            from .backfill import command_backfill

            return command_backfill(args, ctx, arguments)
        if args.command == "features":
            from .features import command_features

            started = datetime.now(UTC)
            code = EXIT_FAILED
            try:
                code = command_features(args, ctx)
            finally:
                audit.record("export", arguments, code, started, {"out": str(args.out)})
            return code
        if args.command in ("prune", "reset"):
            from .clean import command_prune, command_reset

            command = command_prune if args.command == "prune" else command_reset
            return command(args, ctx, arguments)
        if args.command == "forget":
            from .forget import command_forget

            return command_forget(args, ctx)
        if args.command == "serve":
            try:
                from serving.api import command_serve
            except ModuleNotFoundError as exc:
                if exc.name not in SERVING_EXTRA:
                    raise
                raise UsageError(
                    f"serve needs the serving extra ({exc.name} is missing): "
                    'pip install "ml-warehouse[serving]"'
                ) from None
            return command_serve(args, ctx.analytics)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_USAGE


def command_project(args: argparse.Namespace) -> int:
    """`init PATH` and `deps`: the project's own files, no warehouse involved."""
    if args.command == "deps":
        if not dbt_package.uses_package(args.project_dir):
            print(
                f"error: {args.project_dir / 'packages.yml'} does not list the tool's dbt "
                f"package: add `- local: {dbt_package.LINK}` under packages:",
                file=sys.stderr,
            )
            return EXIT_USAGE
        dbt_package.link(args.project_dir)
        print(f"{dbt_package.NAME}: {dbt_package.package_dir()}")
        return EXIT_OK
    from .init import InitError, init

    try:
        written = init(args.path, args.name)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(written)} files in {args.path}; next:")
    print(f"  cd {args.path}")
    print("  edit .dlt/config.toml: uncomment an example source and point it at your data")
    print("  python -m ingestion NAME && python -m ingestion scaffold NAME")
    print("  python -m pipeline run")
    return EXIT_OK


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        sources=list(dict.fromkeys(args.sources)),
        select=args.select,
        vars=args.vars,
        inbox=args.inbox,
        api_url=args.api_url,
        full_refresh=args.full_refresh,
        full_check=args.full_check,
        publish=not args.no_publish,
        wait=args.wait,
        debug=args.debug,
    )


def command_run(args: argparse.Namespace, ctx: Context, arguments: list[str]) -> int:
    options = _options(args)
    if not declared_source_names():
        raise UsageError(
            "no source is declared yet: add a [sources.<name>] table with a kind to "
            ".dlt/config.toml (it has a commented example of each kind)"
        )
    if args.runs is not None and not args.every:
        raise UsageError("--runs only goes with --every")
    try:
        full_check_cadence()
    except CadenceError as exc:
        raise UsageError(str(exc)) from None
    if not args.every:
        return run_pipeline(ctx, options, arguments)
    return every(ctx, options, arguments, parse_interval(args.every), args.runs)


def every(
    ctx: Context, options: RunOptions, arguments: list[str], interval: float, runs: int | None
) -> int:
    """Run on a fixed cadence; a failed run is logged and the schedule goes on."""
    done = 0
    code = EXIT_OK
    next_start = time.monotonic()
    while runs is None or done < runs:
        now = time.monotonic()
        if now < next_start:
            try:
                time.sleep(next_start - now)
            except KeyboardInterrupt:
                return code
        started = time.monotonic()
        code = run_pipeline(ctx, options, arguments)
        done += 1
        if code == EXIT_INTERRUPTED:
            return code
        # Skip slots missed by a run longer than the interval instead of running back to back.
        missed = int((time.monotonic() - started) // interval)
        next_start = started + (missed + 1) * interval
        if runs is None or done < runs:
            when = datetime.now(UTC) + timedelta(seconds=next_start - time.monotonic())
            print(f"next run at {when:%Y-%m-%dT%H:%M:%SZ} (every {interval:g} s)", flush=True)
    return code


def _cell(status: str | None, seconds: float | None) -> str:
    if not status:
        return "-"
    return f"{status} {seconds:.1f}s" if seconds is not None and status != "skipped" else status


def format_runs(rows: list[dict[str, object]]) -> str:
    header = (
        "| run | command | started (UTC) | seconds | status | ingest | build | monitor | publish "
        "| rows loaded | alerts err/warn | published |"
    )
    lines = [header, "|---" * 12 + "|"]
    for r in rows:
        started = r["started_at"]
        finished = r["finished_at"]
        seconds = (
            f"{(finished - started).total_seconds():.1f}"  # type: ignore[operator]
            if finished
            else "-"
        )
        alerts = f"{r['alerts_error']}/{r['alerts_warn']}" if r["alerts_error"] is not None else "-"
        lines.append(
            f"| {str(r['run_id'])[:8]} | {r['command']} "
            f"| {started:%Y-%m-%d %H:%M:%S} | {seconds} | {r['status']} "  # type: ignore[str-format]
            f"| {_cell(r['ingest_status'], r['ingest_seconds'])} "  # type: ignore[arg-type]
            f"| {_cell(r['build_status'], r['build_seconds'])} "  # type: ignore[arg-type]
            f"| {_cell(r['monitor_status'], r['monitor_seconds'])} "  # type: ignore[arg-type]
            f"| {_cell(r['publish_status'], r['publish_seconds'])} "  # type: ignore[arg-type]
            f"| {r['rows_loaded'] if r['rows_loaded'] is not None else '-'} | {alerts} "
            f"| {'yes' if r['published'] else 'no'} |"
        )
    failed = [r for r in rows if r["error"]]
    for r in failed[:3]:
        lines.append(f"\n{str(r['run_id'])[:8]}: {redact(str(r['error']))}")
    return "\n".join(lines)


def command_status(ctx: Context, limit: int) -> int:
    """Print the ledger; never opens the warehouse while a run is writing it."""
    shared = SharedLock(ctx.warehouse)
    if not shared.try_acquire():
        holder = read_holder(lock_path(ctx.warehouse)) or {}
        print(
            f"in progress: {holder.get('command', 'a pipeline run')} run "
            f"{str(holder.get('run_id', '?'))[:8]} (PID {holder.get('pid', '?')}, started at "
            f"{holder.get('started_at', '?')}, step {holder.get('step', '?')})"
        )
        print("the ledger is in the warehouse it is writing: run status again when it finishes")
        return EXIT_OK
    try:
        if not ctx.warehouse.exists():
            print(f"no pipeline runs yet (no warehouse at {ctx.warehouse})")
            return EXIT_OK
        try:
            con = duckdb.connect(str(ctx.warehouse), read_only=True)
        except duckdb.Error as exc:
            print(
                f"error: cannot read {ctx.warehouse}: {str(exc).splitlines()[0]}", file=sys.stderr
            )
            return EXIT_FAILED
        try:
            con.execute("set TimeZone = 'UTC'")
            rows = ledger.last_runs(con, limit)
        finally:
            con.close()
    finally:
        shared.release()
    if not rows:
        print("no pipeline runs yet: python -m pipeline run")
        return EXIT_OK
    print(format_runs(rows))
    return EXIT_OK

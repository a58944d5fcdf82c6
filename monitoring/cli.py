"""`python -m monitoring`: is today's data healthy, and what changed since the last runs?

Runs after `dbt build`: measures every monitored table (marts and sources from
dbt's manifest; with --incremental only those that changed, monitoring/state.py),
judges the metrics against the project's thresholds and the history in
`monitoring.*`, then prints alerts, writes them as JSON, posts them to an
optional webhook and renders target/quality_report.html.

Exit codes: 0 healthy (warnings allowed), 1 an error-level alert, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse import audit
from warehouse.lock import WarehouseLock
from warehouse.settings import memory_limit, warehouse_file_problem, warehouse_path
from warehouse.sources import undeclared_dbt_sources

from . import alerts as alerting
from . import history, report, state
from .config import Thresholds, parse_time, project_vars
from .manifest import UsageError, discover, load_manifest, load_run_results
from .metrics import ERROR, OK, REUSED, DltLoads, Measurement, Metric, Stored, measure_table

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_SINCE = "30d"
FULL_CHECK = "full: every test over whole tables"
SPARK = "▁▂▃▄▅▆▇█"
COLUMN_SCOPED = {"duplicate_rate", "freshness_hours"}  # table-level though named by a column


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring",
        description="Measure data quality after `dbt build`; alert on thresholds and anomalies.",
    )
    parser.add_argument(
        "--since", default=DEFAULT_SINCE, help="history window for anomalies and charts (7d, 12h)"
    )
    parser.add_argument(
        "--target-dir",
        default=os.environ.get("DBT_TARGET_PATH", "target"),
        type=Path,
        help="dbt's target folder (default $DBT_TARGET_PATH or target)",
    )
    parser.add_argument(
        "--project-dir", default=".", type=Path, help="folder with dbt_project.yml (for vars)"
    )
    parser.add_argument(
        "--report", type=Path, help="HTML report (default <target-dir>/quality_report.html)"
    )
    parser.add_argument(
        "--alerts-json", type=Path, help="alerts file (default <target-dir>/quality_alerts.json)"
    )
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("MONITORING_WEBHOOK_URL"),
        help="Slack-compatible webhook for alerts (env MONITORING_WEBHOOK_URL)",
    )
    parser.add_argument(
        "--now", help="fixed clock for freshness, ISO UTC (else var quality_now, else the clock)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for another run writing the warehouse (default: exit 1 at once)",
    )
    parser.add_argument(
        "--check",
        default=FULL_CHECK,
        help="which check the build's dbt tests did, for the report (set by the pipeline)",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="read only the tables that changed since their stored measurement, and count "
        "outliers against the stored fences (the pipeline's runs between full checks)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command")
    hist = commands.add_parser("history", help="print the stored trend of the metrics")
    hist.add_argument("--model", help="one table, e.g. marts.dim_users")
    hist.add_argument("--metric", help="one metric, e.g. row_count")
    hist.add_argument("--since", dest="history_since", default=None, help="window, e.g. 7d")
    hist.add_argument("--all-columns", action="store_true", help="include per-column metrics")
    hist.add_argument("--debug", dest="history_debug", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a bad option 2
        return int(exc.code or 0)
    if args.command == "history":  # a read: not audited
        return _main(args)
    started = datetime.now(UTC)
    arguments = list(sys.argv[1:] if argv is None else argv)
    problem = warehouse_file_problem(warehouse_path())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    lock = WarehouseLock(warehouse_path())
    code = EXIT_ERROR
    try:
        busy = lock.take(args.wait, " ".join(["python -m monitoring", *arguments]), "monitor")
        if busy:
            print(f"error: {busy}", file=sys.stderr)
        else:
            code = _main(args)
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        audit.record("monitor", arguments, code, started, holds_lock=lock.held)
        lock.release()
    return code


def _main(args: argparse.Namespace) -> int:
    debug = args.debug or getattr(args, "history_debug", False)
    try:
        if args.command == "history":
            return show_history(args)
        return monitor(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except duckdb.IOException as exc:
        if debug:
            traceback.print_exc()
        print(
            f"error: cannot open the warehouse {warehouse_path()} ({str(exc).splitlines()[0]}): "
            "is another process writing it? Retry when it has finished.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if debug:
            traceback.print_exc()
        print(f"error: monitor failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _now(args: argparse.Namespace, variables: dict[str, Any]) -> datetime:
    text = args.now or variables.get("quality_now")
    if not text:
        return datetime.now(UTC)
    try:
        return parse_time(str(text))
    except ValueError as exc:
        raise UsageError(
            f"bad clock {text!r}: use an ISO timestamp, e.g. 2026-01-05T10:00:00Z"
        ) from exc


def _open_warehouse(read_only: bool) -> duckdb.DuckDBPyConnection:
    path = warehouse_path()
    if not path.exists():
        raise UsageError(
            f"no warehouse at {path}: run `python -m ingestion` and `dbt build` first "
            "(or set WAREHOUSE_PATH)"
        )
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set memory_limit = ?", [memory_limit()])
    return con


def monitor(args: argparse.Namespace) -> int:
    """One monitor run; returns the exit code the data's health deserves."""
    started = datetime.now(UTC)
    manifest = load_manifest(args.target_dir)
    run_results = load_run_results(args.target_dir)
    variables = project_vars(args.project_dir, run_results)
    thresholds = Thresholds(variables)
    as_of = _now(args, variables)
    window = history.parse_since(args.since)
    undeclared = frozenset(undeclared_dbt_sources(args.project_dir))
    targets = discover(manifest, run_results, undeclared)
    if run_results is None:
        skipped = args.target_dir / "run_results.json"
        print(f"warning: no {skipped}: dbt test outcomes skipped", file=sys.stderr)
    if not targets:
        print("warning: the manifest has no marts or sources to monitor", file=sys.stderr)
    invocation = ((run_results or {}).get("metadata") or {}).get("invocation_id") or (
        manifest.get("metadata") or {}
    ).get("invocation_id")
    run: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "pipeline_run_id": os.environ.get(audit.RUN_ID_ENV),
        "started_at": started,
        "as_of": as_of,
        "dbt_invocation_id": invocation,
        "models": len(targets),
        "check": args.check,
        "incremental": args.incremental,
    }
    clock = time.perf_counter()
    con = _open_warehouse(read_only=False)
    try:
        loads = DltLoads(con)
        versions = state.Versions(con, manifest)
        stored = state.read(con) if args.incremental else {}
        measurements = [
            _measure(con, t, thresholds, as_of, loads, versions, stored.get(t.name), args.debug)
            for t in targets
        ]
        past = history.read_history(con, started - window)
        anomalies = history.anomalies(measurements, past, thresholds)
        build = alerting.build_problems(manifest, run_results, {t.unique_id for t in targets})
        alerts = alerting.collect(measurements, anomalies, build)
        exit_code = EXIT_ERROR if any(a.status == ERROR for a in alerts) else EXIT_OK
        run["finished_at"] = datetime.now(UTC)
        run["exit_code"] = exit_code
        metrics = [x for m in measurements for x in m.metrics]
        history.write_run(con, run, metrics, alerts, measurements)
        samples = report.failing_rows(con, measurements)
    finally:
        con.close()
    elapsed = time.perf_counter() - clock

    current = [
        history.Point(run["run_id"], started, x.model, x.column, x.metric, x.value) for x in metrics
    ]
    report_path = args.report or args.target_dir / "quality_report.html"
    report.write(report_path, report.render(run, measurements, alerts, past + current, samples))
    alerts_path = args.alerts_json or args.target_dir / "quality_alerts.json"
    alerting.write_json(alerts_path, run, alerts)

    errors = sum(a.status == ERROR for a in alerts)
    warnings = len(alerts) - errors
    print(summary_table(measurements))
    print()
    print(alerting.console_table(alerts))
    verdict = "ERROR" if errors else "WARN" if warnings else "OK"
    reused = sum(m.how == REUSED for m in measurements)
    summary = (
        f"{verdict}: {len(measurements)} tables monitored in {elapsed:.2f} s "
        f"({reused} unchanged, not read), "
        f"{errors} error and {warnings} warning alerts (run {run['run_id']})"
    )
    print(f"\n{summary}\nreport: {report_path}\nalerts: {alerts_path}")
    if args.webhook_url and alerts:
        alerting.post_webhook(args.webhook_url, alerts, summary)
    return exit_code


def _measure(
    con: duckdb.DuckDBPyConnection,
    target: Any,
    thresholds: Thresholds,
    as_of: datetime,
    loads: DltLoads,
    versions: state.Versions,
    stored: Stored | None,
    debug: bool,
) -> Measurement:
    """Measure one table; a failure there is an error alert, not the end of the run."""
    try:
        return measure_table(con, target, thresholds, as_of, loads, versions.of(target), stored)
    except duckdb.Error as exc:
        if debug:
            traceback.print_exc()
        message = f"could not measure {target.name}: {str(exc).splitlines()[0]}"
        failed = Metric(target.name, None, "measured", 0.0, 1.0, ERROR, message)
        return Measurement(target, False, [failed])


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:,.0f}" if value.is_integer() else f"{value:.1f}"


def summary_table(measurements: list[Measurement]) -> str:
    """One line per table: the numbers a person checks first."""
    columns = [
        "table",
        "rows",
        "cols",
        "missing",
        "duplicates",
        "max outliers",
        "fresh h",
        "tests failed",
        "measured",
        "status",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for m in measurements:
        outliers = [
            x.value for x in m.metrics if x.metric == "outlier_rate" and x.value is not None
        ]
        duplicate = next((x.value for x in m.metrics if x.metric == "duplicate_rate"), None)
        fresh = next((x.value for x in m.metrics if x.metric == "freshness_hours"), None)
        levels = {x.status for x in m.metrics}
        status = ERROR if ERROR in levels else "warn" if "warn" in levels else OK
        lines.append(
            f"| {m.target.name} | {_cell(m.value('row_count'))} | {_cell(m.value('column_count'))} "
            f"| {_cell(m.value('missing_rate'), True)} | {_cell(duplicate, True)} "
            f"| {_cell(max(outliers) if outliers else None, True)} | {_cell(fresh)} "
            f"| {_cell(m.value('dbt_tests_failed'))} | {m.how} | {status} |"
        )
    return "\n".join(lines)


def _spark(values: list[float]) -> str:
    low, high = min(values), max(values)
    if high == low:
        return SPARK[3] * len(values)
    return "".join(SPARK[round((v - low) / (high - low) * (len(SPARK) - 1))] for v in values)


def show_history(args: argparse.Namespace) -> int:
    """`history`: each metric's points over the window, oldest to newest."""
    window = history.parse_since(args.history_since or DEFAULT_SINCE)
    con = _open_warehouse(read_only=True)
    try:
        points = history.read_history(con, datetime.now(UTC) - window, args.model, args.metric)
    finally:
        con.close()
    if not args.all_columns and not args.metric:
        points = [p for p in points if p.column is None or p.metric in COLUMN_SCOPED]
    if not points:
        print("no history in that window: run `python -m monitoring` after `dbt build` first")
        return EXIT_OK
    print("| model | metric | column | points | first run | last run | last | min | max | trend |")
    print("|---" * 10 + "|")
    for (model, column, metric), series in sorted(
        history.series(points).items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1] or "")
    ):
        values = [p.value for p in series if p.value is not None]
        if not values:
            continue
        print(
            f"| {model} | {metric} | {column or ''} | {len(series)} | "
            f"{series[0].measured_at:%Y-%m-%d %H:%M} | {series[-1].measured_at:%Y-%m-%d %H:%M} "
            f"| {values[-1]:.4g} | {min(values):.4g} | {max(values):.4g} | {_spark(values[-30:])} |"
        )
    return EXIT_OK

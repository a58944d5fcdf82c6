"""`python -m ingestion`: load the raw sources into the warehouse with dlt.

Each source runs as its own dlt pipeline, one after the other (DuckDB takes one
writer at a time). A failing source does not stop the others; the exit code
says what happened: 0 all loaded, 1 some source failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb

from privacy import suppression
from warehouse import audit
from warehouse.audit import redact
from warehouse.lock import WarehouseLock
from warehouse.settings import (
    RAW_DATASET,
    locked_warehouse_message,
    warehouse_destination,
    warehouse_file_problem,
    warehouse_path,
)
from warehouse.sources import SourceDeclarationError, declared_sources

from .destination import make_pipeline
from .kinds import check_declarations, follows, kind_function, kind_module, source_options
from .kinds.common import Flag, SourceConfigError, stored_name, tables_present
from .rejected import (
    REJECTED_TABLE,
    drop_replaced_rejects,
    ensure_rejected_table,
    keep_on_refresh,
)

EXIT_OK, EXIT_SOURCE_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class SourceReport:
    """What one source did in this run: the row of the summary table."""

    name: str
    status: str = "ok"
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_collapsed: int = 0
    rows_unchanged: int = 0  # read again, as raw holds them: not loaded (rest_api, sql_table)
    new_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    acked: int = 0  # broker entries acknowledged after the load (jsonl, redis backend)
    suppressed: int = 0  # rows of erased users dropped (python -m pipeline forget)
    files_rejected: list[str] = field(default_factory=list)  # "<file> (<reason>)"
    files_ignored: list[str] = field(default_factory=list)  # in the folder, matching no pattern
    files_refused: list[str] = field(default_factory=list)  # changed where they may only grow


@dataclass
class Declared:
    """A declared source, its options resolved (config, env, secrets, then CLI flags)."""

    name: str
    kind: str
    options: dict[str, Any]
    max_rejected_rate: float

    def open_broker(self) -> Any:
        """The broker a streaming source reads (None for files and the other kinds): held
        by the CLI, which acknowledges it after the load."""
        if not follows(self.kind):
            return None
        return kind_module(self.kind).open_broker(self.name, **self.options)


def declare(name: str, args: argparse.Namespace) -> Declared:
    """The source `name` as declared, with --inbox and --api-url on top (each kind says
    what the flags mean to it: `with_flags` in its module)."""
    kind, options, rate = source_options(name)
    module = kind_module(kind)
    if hasattr(module, "with_flags"):
        inbox = Flag(Path(args.inbox), f"--inbox {args.inbox}") if args.inbox else None
        options = module.with_flags(name, options, inbox, args.api_url)
    return Declared(name, kind, options, rate)


def _make_source(source: Declared, args: argparse.Namespace, backend: Any = None) -> Any:
    """Build the dlt source of a declared source (a streaming one with its broker)."""
    options = dict(source.options)
    if follows(source.kind):
        options["stream_backend"] = backend
        if getattr(args, "follow", False):
            options["max_batch"] = args.max_batch
    return kind_function(source.kind)(source.name, **options)


def _columns(pipeline: dlt.Pipeline, schema_name: str) -> dict[str, set[str]]:
    """The columns of each table in the source's schema, as dlt knows them now."""
    if schema_name not in pipeline.schema_names:
        return {}
    tables = pipeline.schemas[schema_name].tables.items()
    return {name: set(table.get("columns", {})) for name, table in tables}


def _add_last_runs(report: SourceReport, pipeline: dlt.Pipeline, schema_name: str) -> None:
    """Add up the `last_run` counters each resource keeps in dlt state."""
    resources = pipeline.state.get("sources", {}).get(schema_name, {}).get("resources", {})
    for state in resources.values():
        last_run = state.get("last_run", {})
        report.rows_read += last_run.get("rows_read", 0)
        report.rows_collapsed += last_run.get("rows_collapsed", 0)
        report.rows_unchanged += last_run.get("rows_unchanged", 0)
        report.files_rejected += last_run.get("files_rejected", [])
        report.files_ignored += last_run.get("files_ignored", [])
        report.files_refused += last_run.get("files_refused", [])


def _loaded_rows(pipeline: dlt.Pipeline) -> tuple[int, int]:
    """Rows written by this run: (data rows, rejected rows), from dlt's normalize step."""
    info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = info.row_counts if info else {}
    data = sum(n for table, n in counts.items() if not table.startswith("_dlt"))
    rejected = counts.get(REJECTED_TABLE, 0)
    return data - rejected, rejected


def run_source(name: str, args: argparse.Namespace, backend: Any = None) -> SourceReport:
    """Extract, normalize and load one source; errors become a one-line report.

    A broker `backend` (jsonl from Redis) is acknowledged only after
    `pipeline.run` returned, i.e. once the load holding its entries committed.
    Then the rejects gate: above the source's `max_rejected_rate` it fails.
    """
    report = SourceReport(name)
    started = time.monotonic()
    owned = None  # a backend opened here is closed here
    erased = None
    try:
        declared = declare(name, args)
        if backend is None:
            backend = owned = declared.open_broker()
        erased = suppression.load(warehouse_path())  # before dlt opens the warehouse
        pipeline = make_pipeline(name)
        recovered = finish_pending(pipeline, name)
        if recovered is None or not getattr(args, "state_synced", False):
            pipeline = state_from_warehouse(pipeline, name)
            args.state_synced = bool(getattr(args, "follow", False))  # --follow: its batches'
            recovered = recovered or []
        source = _make_source(declared, args, backend)
        suppression.apply(source, erased)
        keep_stored_types(pipeline, source)
        before = _columns(pipeline, source.name)
        if args.progress:  # dlt takes the collector on the pipeline, not on run()
            pipeline.collector = dlt.progress.log(10, logger=sys.stderr)
        if args.full_refresh:
            keep_on_refresh(pipeline, source.name)
            # On the pipeline, not run(): the resources see it (kinds.common.raw_to_check).
            pipeline.refresh = "drop_sources"
        load_info = pipeline.run(source)
        if args.full_refresh:
            drop_replaced_rejects(pipeline, source.name, list(load_info.loads_ids))
        report.new_columns = sorted(  # schema evolution: new columns of existing tables
            f"{table}.{column}"
            for table, columns in _columns(pipeline, source.name).items()
            if table in before
            for column in columns - before[table]
            if not column.startswith("_dlt")
        )
        _add_last_runs(report, pipeline, source.name)
        report.rows_loaded, report.rows_rejected = _loaded_rows(pipeline)
        if recovered:  # what the interrupted run left pending, loaded now, counts too
            loaded, rejected = _rows_of_loads(pipeline, source.name, recovered)
            report.rows_loaded += loaded
            report.rows_rejected += rejected
        report.suppressed = sum(erased.dropped.values()) if erased else 0
        if backend is not None:
            report.acked = backend.acknowledge()
        gate = refused_files(report) or rejects_gate(
            report, declared.max_rejected_rate, pipeline, load_info
        )
        if gate:
            report.status, report.error = "failed", gate
    except Exception as exc:  # one line per failed source; the others still load
        if backend is not None:
            backend.discard()
        if args.debug:
            logging.exception("source %s failed", name)
        if any(type(e).__name__ == "SignalReceivedException" for e in _chain(exc)):
            report.status = "interrupted"  # SIGTERM/SIGINT: stopped at a safe point (Interrupt)
        else:
            report.status = "failed"
            report.error = describe_error(exc)
    finally:
        if owned is not None:
            owned.close()
        if erased is not None:
            erased.close()
    report.seconds = time.monotonic() - started
    return report


def finish_pending(pipeline: dlt.Pipeline, name: str) -> list[str] | None:
    """Load what a killed or interrupted run left in dlt's working folder, then go on;
    the load ids it loaded (None: it could not, and was dropped).

    dlt's `pipeline.run` would load the pending packages and return without
    extracting anything new, so one re-run would not catch up; finishing them
    first makes the next run complete the job. A pending load that cannot finish
    (a value the raw column cannot take, loaded before the types were kept) is
    dropped with what it wrote, and its rows are read again (`state_from_warehouse`):
    a run never stays stuck behind it.
    """
    if not pipeline.has_pending_data:
        return []
    print(f"{name}: finishing the load an interrupted run left pending", file=sys.stderr)
    # Killed between normalize's commit (package renamed into load/) and its deletion
    # of the extracted copy ("do not kill this process"): that copy is stale. Normalizing
    # it again fails on the existing package forever, or would load it twice.
    done = {*pipeline.list_normalized_load_packages(), *pipeline.list_completed_load_packages()}
    stale = [i for i in pipeline.list_extracted_load_packages() if i in done]
    if stale:
        extracted = pipeline._get_normalize_storage().extracted_packages
        for load_id in stale:
            extracted.delete_package(load_id)
    try:
        if pipeline.list_extracted_load_packages():
            pipeline.normalize()
        if pipeline.list_normalized_load_packages():
            return list(pipeline.load().loads_ids)
    except Exception as exc:  # noqa: BLE001 - any failure: drop it, read its rows again
        pending = [
            *pipeline.list_normalized_load_packages(),
            *pipeline.list_extracted_load_packages(),
        ]
        _delete_loads(pipeline, name, pending)
        print(
            f"{name}: dropped a pending load that could not finish ({describe_error(exc)}); "
            "its rows are read again",
            file=sys.stderr,
        )
        return None
    return []


def _delete_loads(pipeline: dlt.Pipeline, schema_name: str, load_ids: list[str]) -> None:
    """Delete what these (failed) loads wrote to any table of the source: a load's jobs
    are not one transaction, so one table may hold rows of a load that failed."""
    if not load_ids or pipeline.destination.destination_name == "filesystem":
        return
    tables = (
        pipeline.schemas[schema_name].data_table_names()
        if schema_name in pipeline.schema_names
        else []
    )
    placeholders = ", ".join(["%s"] * len(load_ids))
    with pipeline.sql_client() as client:
        present = tables_present(client)
        for table in [t for t in tables if t in present]:
            client.execute_sql(
                f"delete from {client.make_qualified_table_name(table)}"
                f" where _dlt_load_id in ({placeholders})",
                *load_ids,
            )


def state_from_warehouse(pipeline: dlt.Pipeline, name: str) -> dlt.Pipeline:
    """The source's pipeline with its state (files read, positions, cursors) taken from
    the warehouse, not from what dlt keeps beside it: dlt's working folder is removed
    and state and schema restored from the last load the warehouse committed. A deleted
    or replaced warehouse file is then loaded again from the inputs, exactly once."""
    shutil.rmtree(pipeline.working_dir, ignore_errors=True)
    pipeline = make_pipeline(name)
    pipeline.sync_destination()
    return pipeline


def keep_stored_types(pipeline: dlt.Pipeline, source: Any) -> None:
    """A declared type (a database's reflected column, an API's column hint) that differs
    from the type raw already has for that column is not applied.

    Applied, dlt would change its schema's type but not raw's column, and write
    values of the new type into the old column: the load fails, and every run after
    it. Left out, each value that fits the stored type is loaded into it and the
    others into a variant column (`qty__v_text`), which the summary reports as new.
    """
    if source.name not in pipeline.schema_names:
        return
    stored = pipeline.schemas[source.name].tables
    for resource in source.resources.values():
        hints = resource.columns
        table = resource.table_name
        if not isinstance(hints, dict) or not isinstance(table, str) or table not in stored:
            continue
        columns = stored[table].get("columns", {})
        for column, hint in hints.items():
            was = columns.get(stored_name(column), {}).get("data_type")
            if was and hint.get("data_type") not in (None, was):
                hint.pop("data_type")
                hint.pop("precision", None)
                hint.pop("scale", None)


def _rows_of_loads(
    pipeline: dlt.Pipeline, schema_name: str, load_ids: list[str]
) -> tuple[int, int]:
    """(data rows, rejected rows) these loads wrote, counted in the warehouse by load id."""
    tables = (
        pipeline.schemas[schema_name].data_table_names()
        if schema_name in pipeline.schema_names
        else []
    )
    placeholders = ", ".join(["%s"] * len(load_ids))
    counts = {}
    with pipeline.sql_client() as client:
        for table in tables:
            rows = client.execute_sql(
                f"select count(*) from {client.make_qualified_table_name(table)}"
                f" where _dlt_load_id in ({placeholders})",
                *load_ids,
            )
            counts[table] = rows[0][0] if rows else 0
    rejected = counts.pop(REJECTED_TABLE, 0)
    return sum(counts.values()), rejected


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (dlt wraps step failures)."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    return seen


def describe_error(exc: BaseException) -> str:
    """One line that says what failed and what to do.

    dlt wraps what a source raised in its own step exceptions; the sources raise
    errors whose messages are written for users (and hold no secrets), so the
    first non-dlt exception in the chain is the one to show.
    """
    chain = _chain(exc)
    for err in chain:
        locked = locked_warehouse_message(str(err))
        if locked:
            return locked
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return (
                f"no space left on the device of {warehouse_path()} or dlt's working folder; "
                "free some, then run again (the next run first finishes this load)"
            )
    cause = next((e for e in chain if not type(e).__module__.startswith("dlt")), chain[-1])
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, (OSError, ValueError, RuntimeError)) and first_line:
        return first_line
    return f"{type(cause).__name__}: {first_line}"


def refused_files(report: SourceReport) -> str | None:
    """One line when segments changed in the part already loaded (the rest did load)."""
    if not report.files_refused:
        return None
    return (
        f"refused {', '.join(report.files_refused)}: a segment only grows; put new lines "
        f"in a new segment, or reload the source (python -m ingestion {report.name} "
        "--full-refresh); the other segments loaded"
    )


def rejects_gate(
    report: SourceReport, max_rate: float, pipeline: dlt.Pipeline, load_info: Any
) -> str | None:
    """One line when this run rejected more than `max_rate` of what it read (else None).

    The rows are loaded (raw keeps what came, rejects included); failing the
    source stops `python -m pipeline run` before the build, so nothing is
    published from a source that sent mostly garbage.
    """
    if not report.rows_read or report.rows_rejected <= max_rate * report.rows_read:
        return None
    reasons = _rejected_by_reason(pipeline, list(load_info.loads_ids), report.name)
    return (
        f"rejected {report.rows_rejected} of {report.rows_read} records "
        f"({report.rows_rejected / report.rows_read:.1%}), above "
        f"sources.{report.name}.max_rejected_rate = {max_rate:g}: {reasons}; "
        "see raw._rejected_rows"
    )


def _rejected_by_reason(pipeline: dlt.Pipeline, load_ids: list[str], source: str) -> str:
    """`reason in file, file (count)` for the rejects of these loads, the largest first."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REJECTED_TABLE)
            placeholders = ", ".join(["%s"] * len(load_ids))
            rows = client.execute_sql(
                f"select reason, split_part(location, ':', 1) as file, count(*) as n"
                f" from {table} where source = %s and _dlt_load_id in ({placeholders})"
                f" group by 1, 2 order by 3 desc, 2",
                source,
                *load_ids,
            )
    except Exception:  # noqa: BLE001 - the counts are in the summary; reasons are a bonus
        return "reasons in raw._rejected_rows"
    by_reason: dict[str, list[str]] = {}
    for reason, file, count in rows or []:
        by_reason.setdefault(reason, []).append(f"{file} ({count})")
    parts = [f"{reason} in {', '.join(files[:5])}" for reason, files in by_reason.items()]
    return "; ".join(parts[:5])


def check_warehouse_writable(path: Path) -> str | None:
    """Fail fast, before any source runs, when another process holds the warehouse; make
    raw._rejected_rows when it is not there yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(path)) as con:
            if warehouse_destination() == "duckdb":
                ensure_rejected_table(con, RAW_DATASET)
    except duckdb.Error as exc:
        return locked_warehouse_message(str(exc)) or (
            f"cannot open warehouse {path}: {str(exc).splitlines()[0]}"
        )
    return None


def format_summary(reports: list[SourceReport]) -> str:
    """A markdown-style table, one row per source."""
    header = (
        "| source | status | read | loaded | rejected | collapsed | unchanged | new columns "
        "| seconds |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in reports:
        lines.append(
            f"| {r.name} | {r.status} | {r.rows_read} | {r.rows_loaded} | {r.rows_rejected} "
            f"| {r.rows_collapsed} | {r.rows_unchanged} | {', '.join(r.new_columns) or '-'} "
            f"| {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def describe(argv: list[str], out: Callable[[str], None] = print) -> int:
    """`python -m ingestion describe [--inbox ROOT]`: every declared source as its kind
    sees it, as JSON: kind, raw tables, and the folder and glob a file sensor watches.
    What an orchestrator asks instead of knowing the kinds (the Dagster location)."""
    parser = argparse.ArgumentParser(prog="python -m ingestion describe")
    parser.add_argument("--inbox", help="as python -m ingestion --inbox")
    args = parser.parse_args(argv)
    try:
        tables = check_declarations()
    except (SourceDeclarationError, SourceConfigError) as error:
        print(redact(f"error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    inbox = Flag(Path(args.inbox), f"--inbox {args.inbox}") if args.inbox else None
    described = {}
    for name, raw in tables.items():
        kind, options, _ = source_options(name)
        watch = getattr(kind_module(kind), "watched", None)
        watched = watch(name, options, inbox) if watch else None
        described[name] = {
            "kind": kind,
            "tables": [table.name for table in raw],
            "watch": list(watched) if watched else None,
        }
    out(json.dumps(described))
    return EXIT_OK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    declared = declared_sources()
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Load the sources declared in .dlt/config.toml into the warehouse's "
        "raw schema. `python -m ingestion scaffold NAME` writes a loaded source's dbt files.",
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help=f"sources to load (default: every declared one: {', '.join(declared) or 'none'})",
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="drop the sources' raw tables and state, then reload",
    )
    parser.add_argument(
        "--inbox",
        help="root folder with one subfolder per file source: ROOT/<name> (overrides "
        "each one's folder in .dlt/config.toml)",
    )
    parser.add_argument(
        "--api-url", help="base URL of the rest_api sources (overrides their base_url)"
    )
    parser.add_argument(
        "--progress", action="store_true", help="log extract/normalize/load progress every 10 s"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--wait",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="wait up to this long for another run writing the warehouse (default: exit 1 at once)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="one jsonl source: keep consuming in micro-batches until SIGTERM/SIGINT",
    )
    parser.add_argument(
        "--interval",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="--follow: longest wait for new events between batches (e.g. 5s, 500ms; default 5s)",
    )
    parser.add_argument(
        "--max-batch",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="--follow: at most N events a batch (backpressure; default 50000)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.sources if name not in declared]
    if unknown:
        parser.error(
            f"unknown source {unknown[0]!r}; the declared sources are "
            f"{', '.join(declared) or 'none'} (add [sources.{unknown[0]}] to .dlt/config.toml)"
        )
    if args.follow:
        streams = [n for n in args.sources or declared if follows(declared[n]["kind"])]
        if len(streams) != 1 or (args.sources and args.sources != streams):
            parser.error("--follow works with one jsonl source: python -m ingestion NAME --follow")
        args.sources = streams
    if args.follow and args.full_refresh:
        parser.error("--follow cannot be combined with --full-refresh")
    return args


def _duration(text: str) -> float:
    """Seconds from `5s`, `500ms`, `2m` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 5s, 500ms, 1m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2) or "s"]


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(text)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    started = datetime.now(UTC)
    arguments = list(sys.argv[1:] if argv is None else argv)
    reports: list[SourceReport] = []
    lock = WarehouseLock(warehouse_path())
    code = EXIT_USAGE
    try:
        code = _main(arguments, out, reports, lock)
    except KeyboardInterrupt:
        code = 130
        raise
    except SystemExit:  # argparse: --help or bad arguments, nothing was done
        code = -1
        raise
    finally:
        if code != -1:
            detail = {
                r.name: {
                    "status": r.status,
                    "loaded": r.rows_loaded,
                    "rejected": r.rows_rejected,
                    "suppressed": r.suppressed,
                    "error": r.error,
                }
                for r in reports
            }
            audit.record("ingest", arguments, code, started, detail, holds_lock=lock.held)
        lock.release()
    return code


def _holder_command(arguments: list[str]) -> str:
    return redact(" ".join(["python -m ingestion", *arguments]))


def _main(
    arguments: list[str],
    out: Callable[[str], None],
    reports: list[SourceReport],
    lock: WarehouseLock,
) -> int:
    if arguments[:1] == ["scaffold"]:
        from .scaffold import main as scaffold

        return scaffold(arguments[1:], out)
    if arguments[:1] == ["describe"]:
        return describe(arguments[1:], out)
    try:
        args = parse_args(arguments)
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
        if not args.debug:  # dlt logs its failures with tracebacks; ours say it in one line
            os.environ["RUNTIME__LOG_LEVEL"] = "CRITICAL"  # before dlt's config is first read
        check_declarations()  # every declaration, before anything loads
    except (SourceDeclarationError, SourceConfigError) as error:
        print(redact(f"error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    names = list(dict.fromkeys(args.sources)) or list(declared_sources())
    if not names:
        print(
            "error: no source is declared: add [sources.<name>] to .dlt/config.toml "
            "(docs/sources.md)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    problem = warehouse_file_problem(warehouse_path())
    if problem is None and args.follow:
        return follow(args, lock, arguments, out)
    problem = problem or lock.take(args.wait, _holder_command(arguments), "ingest")
    problem = problem or check_warehouse_writable(warehouse_path())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    with Interrupt() as interrupt:
        for name in names:
            if interrupt.signum:
                reports.append(SourceReport(name, status="skipped"))
                continue
            if args.progress:
                print(f"loading {name} ...", file=sys.stderr)
            reports.append(run_source(name, args))
    out(redact(format_summary(reports)))
    for r in reports:
        if r.files_rejected:
            out(f"{r.name}: rejected whole: {', '.join(r.files_rejected)}")
        if r.files_ignored:
            out(f"{r.name}: ignored, matching no pattern: {', '.join(r.files_ignored)}")
        if r.suppressed:
            out(f"{r.name}: suppressed {r.suppressed} rows of erased users (not loaded)")
        if r.error:
            print(redact(f"error: {r.name}: {r.error}"), file=sys.stderr)
    if interrupt.signum:
        left = [r.name for r in reports if r.status in ("interrupted", "skipped")]
        print(
            f"error: interrupted by {signal.Signals(interrupt.signum).name}; not loaded: "
            f"{', '.join(left) or 'none'}; run python -m ingestion again to finish "
            "(it completes what this run left pending first)",
            file=sys.stderr,
        )
        return 128 + interrupt.signum
    return EXIT_SOURCE_FAILED if any(r.status == "failed" for r in reports) else EXIT_OK


class Interrupt:
    """SIGTERM/SIGINT: stop at dlt's next safe point (a batch run: the later sources are
    skipped), or, with `after_batch`, once the current batch has loaded (--follow).

    dlt's own interception is switched off: it restores the previous handlers
    after each step and can drop a signal that arrives while a load finishes.
    Here the handler stays for the whole run and raises dlt's flag, which its
    extract, normalize and load check between items and jobs; what was not
    committed stays in dlt's working folder and the next run finishes it
    (`finish_pending`). A second signal stops at once (KeyboardInterrupt).
    """

    def __init__(self, after_batch: bool = False) -> None:
        self.signum = 0
        self.after_batch = after_batch
        self._previous: dict[int, Any] = {}
        self._intercept: str | None = None

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
            self._intercept = os.environ.get(_INTERCEPT_ENV)
            os.environ[_INTERCEPT_ENV] = "false"
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.signum:  # dlt's flag is process-wide: a later run in this process starts clean
            from dlt.common.runtime import signals as dlt_signals

            dlt_signals.set_received_signal(0)
        if self._previous:
            if self._intercept is None:
                os.environ.pop(_INTERCEPT_ENV, None)
            else:
                os.environ[_INTERCEPT_ENV] = self._intercept

    def _handle(self, signum: int, frame: Any) -> None:
        from dlt.common.runtime import signals as dlt_signals

        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum
        if self.after_batch:
            os.write(sys.stderr.fileno(), b"stopping after the current batch\n")
            return
        dlt_signals.set_received_signal(signum)
        dlt_signals.wake_all()
        os.write(sys.stderr.fileno(), b"stopping at the next safe point (again: stop at once)\n")


_INTERCEPT_ENV = "RUNTIME__INTERCEPT_SIGNALS"


# --------------------------------------------------------------------------- --follow

# Consecutive failed batches (e.g. the warehouse locked by a dbt build) before --follow exits 1.
FOLLOW_MAX_FAILURES = 10
FOLLOW_TICK = 0.2  # seconds: how soon a stop request is noticed while waiting


def format_batch(number: int, report: SourceReport, lag: int | None) -> str:
    """The one line a --follow batch prints."""
    return (
        f"batch {number}: {report.status} read {report.rows_read} loaded {report.rows_loaded} "
        f"rejected {report.rows_rejected} collapsed {report.rows_collapsed} acked {report.acked} "
        f"lag {'-' if lag is None else lag} {report.seconds:.2f} s"
    )


def _lag(backend: Any) -> int | None:
    """Entries the consumer group has not acknowledged yet (None for files or when unknown)."""
    if backend is None:
        return None
    try:
        return backend.lag()
    except Exception:  # noqa: BLE001 - a broker hiccup must not stop the loop; the next batch says
        return None


def _wait(backend: Any, seconds: float, stop: Interrupt) -> None:
    """Until new events may be there: a broker wakes up on arrival, files are polled."""
    deadline = time.monotonic() + seconds
    while not stop.signum and (left := deadline - time.monotonic()) > 0:
        if backend is None:
            time.sleep(min(left, FOLLOW_TICK))
            continue
        try:
            if backend.wait(min(left, FOLLOW_TICK)):
                return
        except Exception:  # noqa: BLE001 - unreachable broker: the next batch reports it
            time.sleep(min(left, FOLLOW_TICK))


def follow(
    args: argparse.Namespace,
    lock: WarehouseLock,
    arguments: list[str],
    out: Callable[[str], None] = print,
) -> int:
    """Micro-batches of events until SIGTERM/SIGINT: each batch loads, commits, then acks.

    A full batch (--max-batch events) is followed by the next one at once, so
    a backlog drains at full speed; otherwise the loop waits up to --interval
    for new events. dlt's own signal handling is switched off so that a stop
    request lets the current batch finish instead of aborting its load. Each
    batch holds the warehouse lock only while it loads, so pipeline runs get
    their turn between batches; while one runs, the loop waits.
    """
    name = args.sources[0]
    try:
        backend = declare(name, args).open_broker()
    except Exception as exc:  # bad backend name or config
        print(redact(f"error: {name}: {describe_error(exc)}"), file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    number = 0
    waiting = False
    with Interrupt(after_batch=True) as stop:
        try:
            while not stop.signum:
                busy = lock.take(0.0, _holder_command(arguments), "ingest")
                if busy:
                    if not waiting:  # once per wait, not once per poll
                        print(f"waiting: {busy}", file=sys.stderr)
                    waiting = True
                    _wait(None, args.interval, stop)
                    continue
                waiting = False
                number += 1
                try:
                    if number == 1:  # raw._rejected_rows, as a batch run makes it
                        check_warehouse_writable(warehouse_path())
                    report = run_source(name, args, backend)
                finally:
                    lock.release()
                out(redact(format_batch(number, report, _lag(backend))))
                if report.error:
                    print(redact(f"error: {name}: {report.error}"), file=sys.stderr)
                    failures += 1
                    if failures >= FOLLOW_MAX_FAILURES:
                        return EXIT_SOURCE_FAILED
                else:
                    failures = 0
                    if report.rows_read >= args.max_batch:
                        continue  # backlog: next batch now
                _wait(backend, args.interval, stop)
        finally:
            if backend is not None:
                backend.close()
    return EXIT_OK

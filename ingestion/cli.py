"""`python -m ingestion`: load the raw sources into the warehouse with dlt.

Each source runs as its own dlt pipeline (ingestion/load.py), one after the
other (DuckDB takes one writer at a time); a file source whose folder is as its
last load left it is not run at all (ingestion/unchanged.py), and when none has
anything new dlt is not even imported. A failing source does not stop the
others; the exit code says what happened: 0 all loaded, 1 some source failed,
2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse import audit
from warehouse.audit import redact
from warehouse.lock import WarehouseLock
from warehouse.settings import (
    LOADING_FD_ENV,
    RAW_DATASET,
    locked_warehouse_message,
    warehouse_destination,
    warehouse_file_problem,
    warehouse_path,
)
from warehouse.sources import SourceDeclarationError, declared_sources

from . import unchanged
from .summary import NOT_DUE, NOTHING_NEW, SourceReport, format_summary, write_json

EXIT_OK, EXIT_SOURCE_FAILED, EXIT_USAGE = 0, 1, 2


def check_warehouse_writable(path: Path, running: list[str]) -> str | None:
    """Fail fast, before any source runs, when another process holds the warehouse; make
    raw._rejected_rows when it is not there yet, and delete the nothing-new records of the
    sources about to run (written again once each has loaded)."""
    from .rejected import ensure_rejected_table

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with duckdb.connect(str(path)) as con:
            if warehouse_destination() == "duckdb":
                ensure_rejected_table(con, RAW_DATASET)
                unchanged.forget(con, running)
    except duckdb.Error as exc:
        return locked_warehouse_message(str(exc)) or (
            f"cannot open warehouse {path}: {str(exc).splitlines()[0]}"
        )
    return None


def describe(argv: list[str], out: Callable[[str], None] = print) -> int:
    """`python -m ingestion describe [--inbox ROOT]`: every declared source as its kind
    sees it, as JSON: kind, raw tables, and the folder and glob a file sensor watches.
    What an orchestrator asks instead of knowing the kinds (the Dagster location)."""
    parser = argparse.ArgumentParser(prog="python -m ingestion describe")
    parser.add_argument("--inbox", help="as python -m ingestion --inbox")
    args = parser.parse_args(argv)
    from .kinds import check_declarations, kind_module, source_options
    from .kinds.common import Flag, SourceConfigError

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
        "--summary-json",
        metavar="PATH",
        help="also write the summary as JSON to PATH (what an orchestrator reads)",
    )
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
        from .kinds import follows

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
                    "dlt_pipeline": r.dlt_pipeline,
                }
                for r in reports
            }
            audit.record("ingest", arguments, code, started, detail, holds_lock=lock.held)
            if summary_path := _summary_path(arguments):
                write_json(summary_path, reports, code)
        lock.release()
    return code


def checked_declarations() -> int | None:
    """Every declared source's options checked (dlt resolves them): EXIT_USAGE with the
    problem said, or None."""
    from warehouse.fresh import FreshSpecError, fresh_spec

    from .kinds import check_declarations
    from .kinds.common import SourceConfigError

    try:
        check_declarations()
        fresh_spec()
    except (SourceDeclarationError, SourceConfigError, FreshSpecError) as error:
        print(redact(f"error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    return None


def _summary_path(arguments: list[str]) -> Path | None:
    """--summary-json PATH, read from the arguments (main writes it whatever happened)."""
    for i, argument in enumerate(arguments):
        if argument == "--summary-json" and i + 1 < len(arguments):
            return Path(arguments[i + 1])
        if argument.startswith("--summary-json="):
            return Path(argument.split("=", 1)[1])
    return None


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
    except SourceDeclarationError as error:
        print(redact(f"error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    if not args.debug:  # dlt logs its failures with tracebacks; ours say it in one line
        os.environ["RUNTIME__LOG_LEVEL"] = "CRITICAL"  # before dlt's config is first read
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
        return checked_declarations() or follow(args, lock, arguments, out)
    problem = problem or lock.take(args.wait, _holder_command(arguments), "ingest")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    answer = (
        unchanged.Answer({}, [])
        if args.full_refresh
        else unchanged.nothing_new(
            warehouse_path(), declared_sources(), names, args.inbox, args.api_url
        )
    )
    quiet = answer.quiet
    running = [name for name in names if name not in quiet]
    if answer.changed:  # a recorded source whose folder, cursor or stream moved: rows coming
        announce_loading()
    if running:
        # Every declaration, before anything loads (about 1 s: dlt resolves every option
        # of every source), unless a record shows the declarations as they were at a load
        # that passed this check (its digest covers every source's declaration, the
        # SOURCES__* variables and the tool's code): it would pass again.
        if not answer.declarations_checked and (code := checked_declarations()):
            return code
        if problem := check_warehouse_writable(warehouse_path(), running):
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_SOURCE_FAILED
    with Interrupt() as interrupt:
        for name in names:
            if name in quiet:
                ignored, not_due = quiet[name]
                status = NOT_DUE if not_due else NOTHING_NEW
                report = SourceReport(name, status=status, dlt_pipeline=False, not_due=not_due)
                report.files_ignored = ignored
                reports.append(report)
                continue
            if interrupt.signum:
                reports.append(SourceReport(name, status="skipped"))
                continue
            if args.progress:
                print(f"loading {name} ...", file=sys.stderr)
            from .load import run_source

            reports.append(run_source(name, args))
            if reports[-1].rows_loaded or reports[-1].rows_rejected:
                announce_loading()
    out(redact(format_summary(reports)))
    for r in reports:
        if r.files_rejected:
            out(f"{r.name}: rejected whole: {', '.join(r.files_rejected)}")
        if r.files_ignored:
            out(f"{r.name}: ignored, matching no pattern: {', '.join(r.files_ignored)}")
        if r.suppressed:
            out(f"{r.name}: suppressed {r.suppressed} rows of erased users (not loaded)")
        if r.not_due:
            out(f"{r.name}: not asked: {r.not_due}")
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


def announce_loading() -> None:
    """Tell the run that started us, once, that this ingestion loads something (see
    warehouse.settings.LOADING_FD_ENV); nothing when no run asked or it stopped listening."""
    fd = os.environ.pop(LOADING_FD_ENV, "")
    if fd.isdigit():
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


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
        + ("" if report.fresh_events is None else f"fresh {report.fresh_events} ")
        + f"lag {'-' if lag is None else lag} {report.seconds:.2f} s"
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
    from .load import declare, describe_error, run_source

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
                busy = (
                    "a pipeline command waits for the warehouse: it goes first"
                    if lock.others_waiting()
                    else lock.take(0.0, _holder_command(arguments), "ingest")
                )
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
                        check_warehouse_writable(warehouse_path(), [name])
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

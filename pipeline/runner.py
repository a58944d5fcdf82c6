"""One gated run: take the lock, write the ledger, run the steps, stop at the first failure.

Gates: ingestion must exit 0 (every source loaded), `dbt build` must pass
(warn-level tests allowed, error-level ones fail it), the monitor must exit 0
(warnings allowed). Only then is the analytics file replaced; a failure
anywhere leaves it exactly as it was.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from privacy import PrivacyError
from warehouse import audit
from warehouse.audit import redact
from warehouse.fresh import FreshSpecError
from warehouse.lock import LockBusy, WarehouseLock, holder_info
from warehouse.settings import locked_warehouse_message
from warehouse.sources import undeclared_dbt_sources

from . import console, ledger, scope, steps
from .publish import (
    PublishError,
    current_settings,
    project_marts,
    publication,
    publish,
    refresh_fresh,
)
from .steps import Context, StepResult, one_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunOptions:
    sources: list[str] = field(default_factory=list)
    select: str | None = None
    vars: str | None = None
    inbox: str | None = None
    api_url: str | None = None
    full_refresh: bool = False
    full_check: bool = False
    publish: bool = True
    wait: float = 0.0
    debug: bool = False


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def warehouse_error(exc: BaseException, warehouse: Path) -> str:
    text = str(exc)
    return locked_warehouse_message(text) or (
        f"cannot write the run ledger in {warehouse}: {text.splitlines()[0] if text else exc!r}"
    )


class PipelineRun:
    """Lock + ledger row + step bookkeeping shared by run, publish and backfill."""

    def __init__(
        self,
        command: str,
        arguments: Sequence[str],
        ctx: Context,
        wait: float,
        debug: bool = False,
        holder: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.holder = holder or f"python -m pipeline {command}"  # who holds the lock, for messages
        self.wait = wait
        self.debug = debug
        self.started = datetime.now(UTC)
        self.clock = time.monotonic()
        self.lock = WarehouseLock(ctx.warehouse)
        self.results: list[StepResult] = []
        self.record = ledger.RunRecord(
            run_id=str(uuid.uuid4()),
            command=command,
            arguments=redact(" ".join(arguments)),
            pid=os.getpid(),
            started_at=self.started,
            analytics_path=str(ctx.analytics),
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def begin(self) -> str | None:
        """Take the lock and write the `running` row; a one-line problem, or None."""
        info = holder_info(self.holder, "starting")
        info["run_id"] = self.run_id
        try:
            self.lock.acquire(self.wait, info)
        except LockBusy as exc:
            return str(exc)
        self.record.started_at = self.started = datetime.now(UTC)  # after any wait
        self.ctx.env[audit.RUN_ID_ENV] = self.run_id  # children's audit rows name this run
        self.ctx.env.update(self.lock.child_env())  # and they write under our lock
        self.lock.update(started_at=utc_text(self.started))
        try:
            abandoned = ledger.start(self.ctx.warehouse, self.record)
        except duckdb.Error as exc:
            self._release()
            return warehouse_error(exc, self.ctx.warehouse)
        if abandoned:
            short = ", ".join(a[:8] for a in abandoned)
            print(f"note: marked {len(abandoned)} dead run(s) abandoned: {short}", file=sys.stderr)
        return None

    def life(self, body: Callable[[], int], banner: str = "") -> int:
        """The whole of a run: take the lock and write the `running` row, print `banner`
        (`{run_id}` stands for the run's id), run `body`, which ends with `finish`; an
        interrupt or a ledger that cannot be written between steps finishes the run too.
        The exit code."""
        problem = self.begin()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_FAILED
        if banner:
            print(banner.replace("{run_id}", self.run_id), flush=True)
        try:
            return body()
        except KeyboardInterrupt:
            return self.interrupted()
        except RuntimeError as exc:  # the ledger could not be written between steps
            return self.finish(str(exc))

    def _release(self) -> None:
        for name in self.lock.child_env():
            del self.ctx.env[name]
        self.lock.release()

    def step(self, name: str, action: Callable[[], StepResult]) -> StepResult:
        """Run one step with the ledger and the lock file saying where we are (the ledger
        first: whoever sees the step in the lock file finds it in the ledger too)."""
        self.record.current_step = name
        self.record.set_step(name if name in ledger.STEPS else "build", "running")
        self._save()
        self.lock.update(step=name)
        started = time.monotonic()
        try:
            with console.progress(name) if not self.ctx.verbose else nullcontext():
                result = action()
        except Exception as exc:  # noqa: BLE001 - a crashing step is a failed gate, one line
            if self.debug:
                traceback.print_exc()
            result = StepResult(name, "failed", error=one_line(f"{type(exc).__name__}: {exc}"))
        result.name = name
        result.seconds = time.monotonic() - started
        self.results.append(result)
        shown = (
            result.detail
            if result.status == "ok"
            else "; ".join(x for x in (result.error, result.detail) if x)
        )
        print(console.step_line(name, result.status, result.seconds, redact(shown)), flush=True)
        if result.output.strip():
            print(redact(result.output.rstrip()), flush=True)
        if result.errors.strip():
            print(redact(result.errors.rstrip()), file=sys.stderr, flush=True)
        if name in ("publish", "erase") or "command" in result.data:
            self.audit(name, started, result)  # ingest and monitor children audit themselves
        column = name if name in ledger.STEPS else "build"
        self.record.set_step(column, result.status, self._step_seconds(column, result))
        self._save()
        return result

    def _step_seconds(self, column: str, result: StepResult) -> float:
        """Several results may share one ledger column (backfill batches all count as build)."""
        return sum(
            r.seconds
            for r in self.results
            if (r.name if r.name in ledger.STEPS else "build") == column
        )

    def audit(self, name: str, started: float, result: StepResult) -> None:
        """One audit row for a step this process ran (the dbt build, publish, an erasure)."""
        begun = datetime.now(UTC) - timedelta(seconds=time.monotonic() - started)
        code = EXIT_OK if result.status == "ok" else EXIT_FAILED
        detail = {"step": name, "detail": result.detail, "error": result.error}
        detail.update(result.data.get("audit", {}))
        audit.record(
            name if name in ("publish", "erase") else "build",
            result.data.get("command", ""),
            code,
            begun,
            detail,
            self.run_id,
            self.ctx.warehouse,
            holds_lock=True,
        )

    def skip(self, *names: str, detail: str = "") -> None:
        """Steps that do not run, each said on its line like the others."""
        for name in names:
            self.results.append(StepResult(name, "skipped", detail=detail))
            if name in ledger.STEPS:
                self.record.set_step(name, "skipped")
            print(console.step_line(name, "skipped", 0.0, detail), flush=True)

    def _save(self) -> None:
        try:
            ledger.write(self.ctx.warehouse, self.record)
        except duckdb.Error as exc:
            raise RuntimeError(warehouse_error(exc, self.ctx.warehouse)) from exc

    def finish(self, error: str | None) -> int:
        """Close the ledger row, release the lock, print the summary; the exit code."""
        try:
            self.ctx.dbt_ahead.stop(self.ctx, kill=bool(error and error.startswith("interrupted")))
        finally:
            if self.ctx.dbt_ahead.fate:
                self.record.detail["dbt_child"] = self.ctx.dbt_ahead.fate
        self.record.finished_at = datetime.now(UTC)
        self.record.status = ledger.FAILED if error else ledger.SUCCEEDED
        self.record.current_step = None
        self.record.error = redact(error) if error else None
        try:
            self._save()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
        finally:
            code = EXIT_FAILED if error else EXIT_OK
            detail = {"published": self.record.published, "error": self.record.error}
            audit.record(
                self.record.command,
                self.record.arguments,
                EXIT_INTERRUPTED if error and error.startswith("interrupted") else code,
                self.started,
                detail,
                self.run_id,
                self.ctx.warehouse,
                holds_lock=True,
            )
            self._release()
        elapsed = time.monotonic() - self.clock
        verb = self.record.command
        if error:
            kept = "left as it was" if not self.record.published else "published"
            print(
                f"{verb} {self.run_id[:8]} failed after {elapsed:.1f} s; "
                f"{self.ctx.analytics} {kept}",
            )
            print(f"error: {redact(error)}", file=sys.stderr)
            return EXIT_FAILED
        where = f"published {self.ctx.analytics}" if self.record.published else "nothing published"
        print(f"{verb} {self.run_id[:8]} succeeded in {elapsed:.1f} s; {where}")
        return EXIT_OK

    def interrupted(self) -> int:
        self.finish("interrupted (SIGINT/SIGTERM)")
        return EXIT_INTERRUPTED

    def build_check_kind(self) -> str | None:
        """The check of the last build (for `publish`, which publishes it without building)."""
        con = duckdb.connect(str(self.ctx.warehouse), read_only=True)
        try:
            previous = ledger.last_build(con, exclude_run=self.run_id)
        finally:
            con.close()
        return (previous or {}).get("check_kind")

    def ingest_step(
        self,
        sources: Sequence[str],
        inbox: str | None,
        api_url: str | None,
        full_refresh: bool = False,
    ) -> StepResult:
        """`python -m ingestion`; a run may ingest several times (one source at a time)."""

        def action() -> StepResult:
            before = set(current_load_ids(self.ctx.warehouse))
            result = steps.ingest(self.ctx, sources, inbox, api_url, full_refresh, self.debug)
            new_loads = [x for x in current_load_ids(self.ctx.warehouse) if x not in before]
            self.record.dlt_load_ids = [*self.record.dlt_load_ids, *new_loads]
            result.data["dlt_load_ids"] = new_loads
            # per source: ok, nothing new (no dlt pipeline ran), failed, ...
            self.record.detail["ingest"] = {
                **self.record.detail.get("ingest", {}),
                **result.data.get("sources", {}),
            }
            rows = result.data.get("rows_loaded")
            if rows is not None:
                self.record.rows_loaded = (self.record.rows_loaded or 0) + rows
            rejected = result.data.get("rows_rejected")
            shown = f"{rows:,}" if rows is not None else "?"
            kept_out = f", {rejected:,} rejected (raw._rejected_rows)" if rejected else ""
            result.detail = f"{shown} rows loaded{kept_out}, {len(new_loads)} dlt loads"
            return result

        return self.step("ingest", action)

    def last_build_step(self) -> StepResult:
        """For a publish without a build: the last dbt invocation must have passed."""

        def action() -> StepResult:
            results = steps.read_run_results(self.ctx, since=0)
            if results is None:
                return StepResult(
                    "build",
                    "failed",
                    error=f"no {self.ctx.target_dir}/run_results.json: run dbt first",
                )
            invocation, counts = steps.summarize_results(results)
            self.record.dbt_invocation_id = invocation
            failing = steps.failed_nodes(results)
            if failing:
                return StepResult(
                    "build", "failed", detail=counts, error=f"last dbt run failed: {failing}"
                )
            return StepResult("build", "ok", detail=f"last dbt invocation {invocation}: {counts}")

        return self.step("build", action)

    def monitor_step(self) -> StepResult:
        check = scope.check_description(self.record)
        result = self.step("monitor", lambda: steps.monitor(self.ctx, self.debug, check))
        self.record.alerts_error = result.data.get("alerts_error")
        self.record.alerts_warn = result.data.get("alerts_warn")
        return result

    def first_failure(self) -> str | None:
        """The one-line reason of the first failed step (None when none failed)."""
        return next((gate(r) for r in self.results if r.status == "failed"), None)

    def publish_step(self) -> StepResult:
        def action() -> StepResult:
            load_ids = current_load_ids(self.ctx.warehouse)
            try:
                done = publish(
                    self.ctx.warehouse,
                    self.ctx.analytics,
                    self.run_id,
                    self.record.dbt_invocation_id,
                    load_ids,
                    self.ctx.project_dir,
                    self.record.check_kind or self.build_check_kind(),
                    project_marts(
                        self.ctx.target_dir / "manifest.json",
                        undeclared_dbt_sources(self.ctx.project_dir),
                    ),
                )
            except (PublishError, duckdb.Error, OSError) as exc:
                return StepResult("publish", "failed", error=one_line(f"publish: {exc}"))
            self.record.published = True
            try:  # the file is out: a speed layer that cannot be tidied only keeps more rows
                dropped = refresh_fresh(self.ctx.warehouse, self.ctx.analytics)
            except (FreshSpecError, duckdb.Error, sqlite3.Error, OSError) as exc:
                dropped = None
                print(f"warning: speed layer not tidied after publish: {exc}", file=sys.stderr)
            rows = sum(done.tables.values())
            actions = list(done.masked.values())
            pii = ", ".join(f"{actions.count(a)} {a}ed" for a in ("hash", "redact") if a in actions)
            masked = f", PII columns {pii}" if pii else ""
            detail = f"{len(done.tables)} tables, {rows:,} rows{masked} -> {done.path}"
            data = {
                "tables": done.tables,
                "pii": done.masked,
                "encrypted": done.encrypted,
                "leftovers": done.leftovers,
                "fresh_events_dropped": dropped,
            }
            result = StepResult("publish", "ok", detail=detail, data=data)
            if done.leftovers:
                result.errors = (
                    f"warning: not published, no model of this project builds them: "
                    f"{', '.join(done.leftovers)}; drop them with: python -m pipeline prune"
                )
            return result

        result = self.step("publish", action)
        if result.status == "ok":
            self.record.detail["published_tables"] = result.data["tables"]
            self.record.detail["published_pii"] = result.data["pii"]
            self.record.detail["not_published"] = result.data["leftovers"]
        return result


def current_load_ids(warehouse: Path) -> list[str]:
    if not warehouse.exists():
        return []
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return ledger.dlt_load_ids(con)
    finally:
        con.close()


def gate(result: StepResult) -> str | None:
    """None when the step passed; else the one-line reason the run stops."""
    if result.status == "ok":
        return None
    return f"{result.name}: {result.error or 'failed'}"


def run_pipeline(ctx: Context, options: RunOptions, arguments: Sequence[str]) -> int:
    """ingest -> dbt build -> monitor -> publish, stopping at the first failed gate."""
    run = PipelineRun("run", arguments, ctx, options.wait, options.debug)
    banner = f"pipeline run {{run_id}} (warehouse {ctx.warehouse})"
    return run.life(lambda: _run_steps(run, ctx, options), banner)


def _run_steps(run: PipelineRun, ctx: Context, options: RunOptions) -> int:
    ctx.dbt_ahead.start(ctx)  # imports dbt while ingestion loads, if it loads anything
    ingest = run.ingest_step(options.sources, options.inbox, options.api_url, options.full_refresh)
    ctx.dbt_ahead.loaded(ctx)
    if error := gate(ingest):
        run.skip("build", "monitor", "publish")
        return run.finish(error)

    build = run.step(
        "build",
        lambda: scope.build(
            ctx,
            run.record,
            options.select,
            options.vars,
            full_refresh=options.full_refresh,
            full_check=options.full_check,
        ),
    )
    run.record.dbt_invocation_id = build.data.get("dbt_invocation_id")
    if error := gate(build):
        run.skip("monitor", "publish")
        return run.finish(error)
    if previous := passed_as_is(run, ctx):
        # nothing new: the last run's monitor passed on exactly this warehouse
        run.skip("monitor", detail=f"nothing new since run {previous[:8]}, which passed it")
        if not options.publish or published_as_is(run, ctx):
            run.skip("publish", detail=f"{ctx.analytics} is current" if options.publish else "")
            return run.finish(None)
        return run.finish(gate(run.publish_step()))
    return monitor_and_publish(run, ctx, options)


def passed_as_is(run: PipelineRun, ctx: Context) -> str | None:
    """The id of the last run, when it succeeded and nothing changed since: this run loaded
    no row (a load of dlt's state alone, after a loaded file was moved away, adds none)
    and rebuilt nothing (no new rows, same project, no full check due)."""
    ingested = next((r.data for r in run.results if r.name == "ingest"), {})
    loaded = (ingested.get("rows_loaded"), ingested.get("rows_rejected"))
    if run.record.check_kind != "none" or loaded != (0, 0):
        return None
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        where = "run_id <> ? and status <> ?"
        previous = ledger.last_runs(con, limit=1, where=where, params=[run.run_id, ledger.RUNNING])
    finally:
        con.close()
    if not previous or previous[0]["command"] not in ("run", "publish"):
        return None  # a backfill or an erasure since: measure again
    return previous[0]["run_id"] if previous[0]["status"] == ledger.SUCCEEDED else None


def published_as_is(run: PipelineRun, ctx: Context) -> bool:
    """Whether the analytics file holds what a publish would write now: the same dbt
    invocation over the same dlt loads."""
    try:
        published = publication(ctx.analytics)
        now = current_settings(ctx.warehouse)
    except (duckdb.Error, OSError, PrivacyError):
        return False
    return bool(
        published
        and published.get("settings") == now
        and published.get("dbt_invocation_id") == run.record.dbt_invocation_id
        and list(published.get("dlt_load_ids") or []) == current_load_ids(ctx.warehouse)
    )


def monitor_and_publish(run: PipelineRun, ctx: Context, options: RunOptions) -> int:
    monitor = run.monitor_step()
    if error := gate(monitor):
        run.skip("publish")
        return run.finish(error)
    if not options.publish:
        run.skip("publish")
        return run.finish(None)
    published = run.publish_step()
    return run.finish(gate(published))


def publish_only(ctx: Context, options: RunOptions, arguments: Sequence[str]) -> int:
    """`publish`: the last dbt invocation must have passed, then monitor, then publish."""
    run = PipelineRun("publish", arguments, ctx, options.wait, options.debug)

    def steps() -> int:
        run.skip("ingest")
        build = run.last_build_step()
        if error := gate(build):
            run.skip("monitor", "publish")
            return run.finish(error)
        return monitor_and_publish(run, ctx, options)

    return run.life(steps)

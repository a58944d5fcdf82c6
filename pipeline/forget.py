"""`forget`: the right to erasure, as one gated command.

    erase    delete the users' rows from every table of the warehouse (raw, dlt's
             staging copies, every model, quarantine, rejected rows, audit rows
             of failed tests) and add their digests to the suppression list
    build    `dbt build`, so tables and aggregates are recomputed without them
    publish  a new analytics.duckdb without them (the monitor is skipped: an
             erasure must not wait on quality alerts; the next run measures)

It holds the pipeline lock and writes a ledger row like any run. Neither the
ledger nor the audit log gets an id or an email: the arguments are recorded as
a count, the audit row of the erase step carries the suppression digests and
the rows deleted per table.
"""

from __future__ import annotations

import argparse
import sys

from privacy import PrivacyError, erasure
from warehouse import fresh

from . import steps
from .runner import (
    EXIT_FAILED,
    EXIT_USAGE,
    PipelineRun,
    gate,
)
from .steps import Context, StepResult


def command_forget(args: argparse.Namespace, ctx: Context) -> int:
    try:
        ids = erasure.canonical_ids(args.user_ids)
    except PrivacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not ctx.warehouse.exists():
        print(f"error: no warehouse at {ctx.warehouse}: nothing to erase", file=sys.stderr)
        return EXIT_FAILED
    shown = [f"--users {len(ids)}"] + (["--no-publish"] if args.no_publish else [])
    if args.vars:
        shown += ["--vars", args.vars]
    run = PipelineRun("forget", shown, ctx, args.wait, args.debug)
    banner = f"pipeline forget {{run_id}}: erasing {len(ids)} user(s) from {ctx.warehouse}"
    return run.life(lambda: _steps(run, ctx, ids, args), banner)


def _steps(run: PipelineRun, ctx: Context, ids: list[str], args: argparse.Namespace) -> int:
    def erase() -> StepResult:
        done = erasure.erase(ctx.warehouse, ids, audit_id=run.run_id)
        files = erasure.purge_load_packages(ctx.warehouse)
        spec = fresh.fresh_spec()
        numeric = [int(i) for i in ids if i.lstrip("-").isdigit()]
        fresh_rows = fresh.forget(fresh.store_path(ctx.analytics), spec, numeric) if spec else 0
        detail = (
            f"{len(ids)} user(s), {done.emails} email(s): {done.total:,} rows deleted "
            f"from {len(done.rows_deleted)} tables, suppressed; {files} dlt load files purged"
            + (f"; {fresh_rows} speed-layer events" if fresh_rows else "")
        )
        record = {
            "users": done.users,
            "emails": done.emails,
            "rows_deleted": done.rows_deleted,
            "suppression_digests": done.digests,
            "dlt_load_files_purged": files,
            "fresh_events_deleted": fresh_rows,
        }
        return StepResult("erase", "ok", detail=detail, data={"audit": record})

    erased = run.step("erase", erase)
    if erased.status == "ok":
        run.record.detail["erased"] = {
            k: v for k, v in erased.data["audit"].items() if k != "suppression_digests"
        }
    if error := gate(erased):
        run.skip("monitor", "publish")
        return run.finish(error)
    build = run.step("build", lambda: steps.build(ctx, None, args.vars, False))
    run.record.dbt_invocation_id = build.data.get("dbt_invocation_id")
    run.skip("monitor")
    if error := gate(build):
        run.skip("publish")
        return run.finish(_still_published(ctx, error))
    if args.no_publish:
        run.skip("publish")
        print(f"note: {ctx.analytics} still holds the erased users until the next publish")
        return run.finish(None)
    published = run.publish_step()
    error = gate(published)
    code = run.finish(_still_published(ctx, error) if error else None)
    if code == 0:
        print(
            "note: feature exports written before this erasure still hold these users: "
            "delete them and export again (python -m pipeline features)"
        )
    return code


def _still_published(ctx: Context, error: str) -> str:
    if not ctx.analytics.exists():
        return error
    return (
        f"{error}; the users are erased from the warehouse and suppressed, but {ctx.analytics} "
        "still holds them until a publish succeeds: fix that and run `python -m pipeline publish`"
    )

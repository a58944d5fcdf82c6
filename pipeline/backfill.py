"""`backfill`: re-process an event-time range through the incremental models, resumably.

Two kinds of model take part, both re-processing exactly one slice per dbt
invocation (a delete of the slice and an insert of it again, so re-running a
slice is idempotent):
- dbt `microbatch` models (`event_time`, `batch_size`), driven by
  `--event-time-start/--event-time-end`; `dbt retry` re-runs failed batches;
- models tagged `backfill` (ours: `stg_events__events`), driven by the vars
  `backfill_start`/`backfill_end` (the dbt package's backfill.sql says why that model is
  not microbatch).
dbt cannot survive `kill -9` (run_results.json is written at the end), so the
range is cut into `--batch` slices, one dbt invocation each, and every
finished slice is recorded in `monitoring.pipeline_backfill_batches`: the same
backfill started again skips the finished slices. After the slices, the models
downstream of the backfilled ones are rebuilt once, then the monitor and
publish gates run as in `run`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import yaml

from . import ledger
from .runner import PipelineRun, RunOptions, gate, monitor_and_publish
from .steps import Context, StepResult, dbt_command, dbt_step, run_command

DEFAULT_SELECTOR = "tag:backfill config.incremental_strategy:microbatch"


def supports_backfill(model: dict[str, object]) -> bool:
    return model["strategy"] == "microbatch" or "backfill" in (model["tags"] or [])


class BackfillUsage(Exception):
    """Bad range or batch: exit 2."""


def parse_point(text: str, end: bool = False) -> datetime:
    """A day (`2026-01-31`; as --end it includes that day) or an ISO timestamp (UTC)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = datetime.fromisoformat(value)
            return day + timedelta(days=1) if end else day
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BackfillUsage(f"{text!r}: use a day (2026-01-31) or an ISO timestamp") from exc
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def parse_batch(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise BackfillUsage(f"--batch {text!r}: use hours, days or weeks, e.g. 6h, 1d, 7d, 1w")
    unit = {"h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def slices(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    out = []
    cursor = start
    while cursor < end:
        out.append((cursor, min(cursor + size, end)))
        cursor += size
    return out


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def list_models(ctx: Context, selector: str) -> list[dict[str, object]]:
    """`dbt ls` of the selected models with their config (name, materialized, strategy)."""
    command = dbt_command(
        ctx,
        "ls",
        "--select",
        *selector.split(),
        "--resource-type",
        "model",
        "--output",
        "json",
        "--output-keys",
        "name config",
        "--quiet",
    )
    done = run_command(command, ctx, capture_stdout=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], file=sys.stderr)
        raise RuntimeError(f"dbt ls --select {selector} failed")
    models = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            node = json.loads(line)
            config = node.get("config") or {}
            models.append(
                {
                    "name": node["name"],
                    "materialized": config.get("materialized"),
                    "strategy": config.get("incremental_strategy"),
                    "event_time": config.get("event_time"),
                    "batch_size": config.get("batch_size"),
                    "tags": config.get("tags") or [],
                }
            )
    return models


def finished_slices(
    ctx: Context, key: dict[str, str], total: int, restart: bool
) -> tuple[str, set[datetime]]:
    """The backfill id to use and the slices it already finished (resume after a failure)."""
    backfill_id = hashlib.sha1(
        (json.dumps(key, sort_keys=True) + datetime.now(UTC).isoformat()).encode()
    ).hexdigest()[:16]
    if restart:
        return backfill_id, set()
    con = ledger.connect(ctx.warehouse)
    try:
        rows = con.execute(
            f"""select backfill_id, list(distinct batch_start) filter (where status = 'ok')
                from {ledger.BATCHES}
                where selector = ? and range_start = ? and range_end = ? and batch_size = ?
                group by backfill_id order by max(finished_at) desc limit 1""",
            [key["selector"], key["range_start"], key["range_end"], key["batch_size"]],
        ).fetchall()
    finally:
        con.close()
    if rows:
        previous, done = rows[0][0], set(rows[0][1] or [])
        if len(done) < total:  # unfinished: resume it
            return previous, done
    return backfill_id, set()


def record_slice(
    ctx: Context,
    key: dict[str, str],
    backfill_id: str,
    window: tuple[datetime, datetime],
    result: StepResult,
    run_id: str,
) -> None:
    con = ledger.connect(ctx.warehouse)
    try:
        con.execute(
            f"insert into {ledger.BATCHES} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                backfill_id,
                key["selector"],
                key["range_start"],
                key["range_end"],
                key["batch_size"],
                window[0],
                window[1],
                result.status,
                round(result.seconds, 3),
                run_id,
                result.data.get("dbt_invocation_id"),
                datetime.now(UTC),
            ],
        )
    finally:
        con.close()


def command_backfill(args: argparse.Namespace, ctx: Context, arguments: Sequence[str]) -> int:
    try:
        start = parse_point(args.start)
        end = parse_point(args.end, end=True)
        size = parse_batch(args.batch)
    except BackfillUsage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print(f"error: empty range: --end {args.end} is not after --start {args.start}")
        return 2
    windows = slices(start, end, size)
    run = PipelineRun("backfill", arguments, ctx, args.wait, args.debug)
    banner = f"backfill {{run_id}}: {stamp(start)} .. {stamp(end)} in {len(windows)} slice(s)"
    return run.life(lambda: _backfill(run, ctx, args, windows, start, end), banner)


def _backfill(
    run: PipelineRun,
    ctx: Context,
    args: argparse.Namespace,
    windows: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
) -> int:
    run.skip("ingest")
    selector = args.select or DEFAULT_SELECTOR
    found: list[dict[str, object]] = []

    def plan() -> StepResult:
        found.extend(list_models(ctx, selector))
        able = [m for m in found if supports_backfill(m)]
        others = [m for m in found if not supports_backfill(m)]
        if not able or others:
            names = ", ".join(str(m["name"]) for m in others) or "none"
            return StepResult(
                "plan",
                "failed",
                error=(
                    "backfill needs dbt microbatch models or incremental models tagged "
                    f"`backfill` (see the dbt package's backfill.sql); selected others: {names}"
                ),
            )
        names = ", ".join(f"{m['name']} ({m['batch_size'] or 'backfill range'})" for m in able)
        return StepResult("plan", "ok", detail=names)

    planned = run.step("plan", plan)
    if error := gate(planned):
        run.skip("monitor", "publish")
        return run.finish(error)
    models = [str(m["name"]) for m in found]
    key = {
        "selector": " ".join(sorted(models)),
        "range_start": stamp(start),
        "range_end": stamp(end),
        "batch_size": args.batch,
    }
    backfill_id, done = finished_slices(ctx, key, len(windows), args.restart)
    run.record.detail.update(backfill_id=backfill_id, slices=len(windows), models=models)
    if done:
        print(f"resuming backfill {backfill_id}: {len(done)} of {len(windows)} slices done")
    for i, window in enumerate(windows, 1):
        if window[0] in done:
            run.skip(f"slice {i}", detail="done earlier")
            continue
        name = f"slice {i}/{len(windows)}"
        result = run.step(name, lambda w=window: _slice(ctx, models, w, args.vars))
        result.detail = f"{stamp(window[0])} .. {stamp(window[1])} {result.detail}".strip()
        record_slice(ctx, key, backfill_id, window, result, run.run_id)
        run.record.dbt_invocation_id = result.data.get("dbt_invocation_id")
        run.record.detail["slices_done"] = len(done) + sum(
            r.status == "ok" and r.name.startswith("slice") for r in run.results
        )
        if error := gate(result):
            run.skip("monitor", "publish")
            return run.finish(f"{error} (re-run the same backfill to resume from this slice)")

    def downstream() -> StepResult:
        children = " ".join(f"{m}+" for m in models)
        command = dbt_command(ctx, "build", "--select", *children.split())
        command += ["--exclude", *models]
        if args.vars:
            command += ["--vars", args.vars]
        return dbt_step("downstream", ctx, command)

    rebuilt = run.step("downstream", downstream)
    run.record.dbt_invocation_id = rebuilt.data.get("dbt_invocation_id")
    if error := gate(rebuilt):
        run.skip("monitor", "publish")
        return run.finish(error)
    options = RunOptions(publish=not args.no_publish, debug=args.debug)
    return monitor_and_publish(run, ctx, options)


def slice_vars(window: tuple[datetime, datetime], user_vars: str | None) -> str:
    """The user's --vars (YAML) plus the slice's range for the `backfill`-tagged models."""
    merged = dict(yaml.safe_load(user_vars) or {}) if user_vars else {}
    merged.update(backfill_start=stamp(window[0]), backfill_end=stamp(window[1]))
    return json.dumps(merged)


def _slice(
    ctx: Context, models: list[str], window: tuple[datetime, datetime], vars_: str | None
) -> StepResult:
    """One dbt build over the window; failed microbatches get one `dbt retry`."""
    command = dbt_command(
        ctx,
        "build",
        "--select",
        *models,
        "--event-time-start",
        stamp(window[0]),
        "--event-time-end",
        stamp(window[1]),
        "--vars",
        slice_vars(window, vars_),
    )
    result = dbt_step("build", ctx, command)
    if result.status != "ok":
        retry = dbt_step("build", ctx, dbt_command(ctx, "retry"))
        if retry.status == "ok":
            retry.detail = f"{retry.detail} (after dbt retry)"
            return retry
    return result

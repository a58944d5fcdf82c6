"""A run's dbt build: what it rebuilds (the models downstream of raw tables that
changed), which check it does, and what it records. `build` is the whole decision,
in the order of this module: plan, build, carry results, record.

Every raw row carries the dlt load that wrote it (`_dlt_load_id`), so the newest
load id of a source table says whether it got rows since a build. A run records
them with its build; when that build passed, the next run rebuilds (and tests)
only what the changed tables reach: `dbt build --select source:events.events+`.
An events-only run then leaves the users chain, rebuilt from every CSV snapshot,
as the last build left it. Whenever that could be wrong it builds everything:
no earlier build in the ledger, or it failed or died; a dbt invocation since
that the ledger did not see (a manual `dbt build`); a changed project (models,
macros, seeds, tests, dbt_project.yml); other `--vars`.

After a narrowed build, run_results.json gets the results of the nodes it did
not run back from the last build, so it describes every node as of its last
build, as a full build's does: the monitor's test alerts and build times (and
the next run's check above) read it.

Which check a build does (`check`):
- `scoped`: a narrowed build. Its tests read the rows loaded since the last
  build started (WAREHOUSE_CHECK_SINCE, the dbt package's scoped_checks.sql), each model
  that says which rows are new; keys are probed against the whole table. dbt's
  unit tests do not run: they read only their fixtures, and the project is the
  one whose build passed them.
- `full`: every model built and every test over whole tables: the first
  build, a build of everything for a reason above, `--full-check`, and the
  first run of each period of the cadence `[pipeline] full_check` in
  .dlt/config.toml (daily by default; PIPELINE__FULL_CHECK overrides it).
- `none`: nothing to rebuild, and no full check due.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from warehouse import dbt_package
from warehouse.settings import CHECK_SINCE_ENV
from warehouse.sources import config_file

from . import ledger, steps
from .steps import Context, StepResult, read_run_results

# What dbt reads besides the warehouse: a change in any of them can change every model.
PROJECT_FILES = ("dbt_project.yml", "packages.yml")
PROJECT_FOLDERS = ("models", "macros", "seeds", "snapshots", "tests/dbt")
LOAD_ID = "_dlt_load_id"
# A full check is due at the first run of each period (UTC), named by this strftime
# of the run's start; `always`: at every run.
CADENCES = {"always": None, "hourly": "%Y-%m-%dT%H", "daily": "%Y-%m-%d", "weekly": "%G-W%V"}
DEFAULT_CADENCE = "daily"


class CadenceError(ValueError):
    """`[pipeline] full_check` names no cadence; the message lists them."""


@dataclass
class BuildScope:
    """`select` None: build everything; [] nothing changed; else dbt selectors.

    `state` is what the plan read (build_state), recorded with the build.
    `check` is full, scoped or none; a scoped check's tests read the rows
    loaded after `since` (the last build's start, UTC).
    """

    select: list[str] | None
    reason: str
    state: dict[str, Any]
    check: str = "full"
    since: str | None = None


def build(
    ctx: Context,
    record: ledger.RunRecord,
    select: str | None,
    vars_: str | None,
    full_refresh: bool = False,
    full_check: bool = False,
) -> StepResult:
    """A run's dbt build: what the user selected (`select`, or `full_refresh`: everything),
    else what the plan below says. Writes into `record` the check it did and what it read
    (`detail.build_scope`), which the next run's plan compares with."""
    built_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    ctx.env.pop(CHECK_SINCE_ENV, None)
    if select or full_refresh:
        record.check_kind = "selected" if select else "full"
        record.detail["build_scope"] = {"built_at": built_at}
        return steps.build(ctx, select, vars_, full_refresh)
    planned = plan(ctx, vars_, record.run_id, full_check)
    record.check_kind = planned.check
    if planned.since:
        ctx.env[CHECK_SINCE_ENV] = planned.since
    if planned.select == []:
        previous = read_run_results(ctx, since=0) or {}
        invocation = (previous.get("metadata") or {}).get("invocation_id")
        result = StepResult("build", "ok", detail=f"nothing to rebuild ({planned.reason})")
        result.data["dbt_invocation_id"] = invocation
    elif planned.select is None:
        result = steps.build(ctx, None, vars_, full_refresh=False)
        result.detail += f" (everything, full check: {planned.reason})"
    else:
        earlier = read_run_results(ctx, since=0)
        # dbt's unit tests read fixtures, never the warehouse: the same project passed
        # them at the last build (its results are carried), new rows cannot change them
        result = steps.build(
            ctx, " ".join(planned.select), vars_, full_refresh=False, unit_tests=False
        )
        result.detail += f" ({planned.reason}; tests scoped to rows after {planned.since} UTC)"
        carry_results(ctx, earlier)
    record.detail["build_scope"] = {
        "select": planned.select,
        "reason": planned.reason,
        "check": planned.check,
        "checked_since": planned.since,
        "built_at": built_at,
        **recorded_state(ctx, planned),
    }
    return result


def plan(ctx: Context, vars_: str | None, run_id: str, full_check: bool = False) -> BuildScope:
    """What this run builds, and which check it does (`full_check`: --full-check)."""
    cadence = full_check_cadence()
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        state = build_state(ctx, vars_, con)
        # the newest other run that started a dbt build (ok, failed or died in it)
        previous = ledger.last_build(con, exclude_run=run_id)
        last_full = ledger.last_full_check(con)
    finally:
        con.close()
    planned = _choose(ctx, state, previous)
    if planned.select is None:
        return planned
    since = ((previous or {}).get("detail") or {}).get("build_scope", {}).get("built_at")
    if full_check or since is None or full_check_due(cadence, last_full, datetime.now(UTC)):
        why = (
            "--full-check"
            if full_check
            else "no record of when the last build started"
            if since is None
            else f"due ({cadence})"
        )
        return BuildScope(None, f"{why}; {planned.reason}", state)
    check = "scoped" if planned.select else "none"
    return BuildScope(planned.select, planned.reason, state, check, since)


def _choose(ctx: Context, state: dict[str, Any], previous: dict[str, Any] | None) -> BuildScope:
    fingerprint, loads = state["project"], state["source_loads"]
    if previous is None:
        return BuildScope(None, "first build", state)
    recorded = (previous.get("detail") or {}).get("build_scope") or {}
    last_invocation = ((read_run_results(ctx, since=0) or {}).get("metadata") or {}).get(
        "invocation_id"
    )
    if previous["build_status"] != "ok":
        return BuildScope(None, "the last build did not pass", state)
    if not loads or recorded.get("source_loads") is None:
        return BuildScope(None, "no record of what the last build read", state)
    if last_invocation != previous["dbt_invocation_id"]:
        return BuildScope(None, "dbt ran outside the pipeline since the last build", state)
    if recorded.get("project") != fingerprint:
        return BuildScope(None, "the dbt project or --vars changed", state)
    before = recorded["source_loads"]
    changed = [key for key, load in loads.items() if load != before.get(key)]
    reason = f"new rows in {', '.join(changed)}" if changed else "no new rows in raw"
    return BuildScope([f"source:{key}+" for key in changed], reason, state)


def carry_results(ctx: Context, earlier: dict[str, Any] | None) -> None:
    """Add the last build's results of nodes this narrowed build did not run."""
    path = ctx.target_dir / "run_results.json"
    current = read_run_results(ctx, since=0)
    if not earlier or not current:
        return
    ran = {r["unique_id"] for r in current.get("results") or []}
    kept = [r for r in earlier.get("results") or [] if r["unique_id"] not in ran]
    current["results"] = [*(current.get("results") or []), *kept]
    path.write_text(json.dumps(current), encoding="utf-8")


def recorded_state(ctx: Context, planned: BuildScope) -> dict[str, Any]:
    """The state to record with the build: the plan's, unless it had no source list.

    The first build writes the manifest that lists the sources; raw cannot change
    while the run holds the lock, nor the project files during the build.
    """
    if planned.state["source_loads"]:
        return planned.state
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        loads = newest_loads(con, source_tables(ctx.target_dir))
    finally:
        con.close()
    return {**planned.state, "source_loads": loads}


def check_description(record: ledger.RunRecord) -> str | None:
    """What the build's tests read, in a few words (the monitor's report shows it)."""
    recorded = record.detail.get("build_scope") or {}
    if record.check_kind == "scoped":
        return f"scoped: the tests read the rows loaded after {recorded['checked_since']} UTC"
    if record.check_kind == "none":
        return "none: nothing was rebuilt; the tests' results are those of the last build"
    if record.check_kind == "selected":
        return "selected: the tests of the models of --select, over whole tables"
    return None  # full, or no build this run (publish): the monitor's default


def pipeline_setting(key: str, path: Path | None = None) -> str | None:
    """`PIPELINE__<KEY>`, else `[pipeline] <key>` of .dlt/config.toml (dlt's naming), else None."""
    value = os.environ.get(f"PIPELINE__{key.upper()}")
    path = path or config_file()
    if value is None and path.is_file():
        with path.open("rb") as handle:
            value = tomllib.load(handle).get("pipeline", {}).get(key)
    return value


def full_check_cadence(path: Path | None = None) -> str:
    """`PIPELINE__FULL_CHECK`, else `[pipeline] full_check` of .dlt/config.toml, else daily."""
    cadence = pipeline_setting("full_check", path) or DEFAULT_CADENCE
    if cadence not in CADENCES:
        raise CadenceError(
            f"pipeline.full_check is {cadence!r}; expected one of {', '.join(CADENCES)}"
        )
    return cadence


def full_check_due(cadence: str, last_full: datetime | None, now: datetime) -> bool:
    """True at the first run of a period of the cadence without a full check yet."""
    period = CADENCES[cadence]
    if last_full is None or period is None:
        return True
    return last_full.astimezone(UTC).strftime(period) != now.astimezone(UTC).strftime(period)


def project_fingerprint(project_dir: Path, vars_: str | None) -> str:
    """The project's dbt files and the tool's dbt package it uses: an upgrade of the tool
    changes its macros, and so the build."""
    digest = hashlib.sha256((vars_ or "").encode())
    named = [(name, project_dir / name) for name in PROJECT_FILES]
    for folder in PROJECT_FOLDERS:
        files = sorted(p for p in (project_dir / folder).rglob("*") if p.is_file())
        named += [(str(p.relative_to(project_dir)), p) for p in files]
    if dbt_package.uses_package(project_dir):
        package = dbt_package.package_dir()
        files = sorted(p for p in package.rglob("*") if p.is_file())
        named += [(f"{dbt_package.NAME}/{p.relative_to(package)}", p) for p in files]
    for name, path in named:
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def source_tables(target_dir: Path) -> dict[str, tuple[str, str]]:
    """`source.table` -> (schema, identifier) of every dbt source, from dbt's manifest."""
    try:
        manifest = json.loads((target_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {
        f"{s['source_name']}.{s['name']}": (s["schema"], s.get("identifier") or s["name"])
        for s in (manifest.get("sources") or {}).values()
    }


def newest_loads(
    con: duckdb.DuckDBPyConnection, tables: dict[str, tuple[str, str]]
) -> dict[str, str | None]:
    """The newest dlt load id in each table that has the column (null when empty)."""
    found = {
        (schema, table)
        for schema, table in con.execute(
            "select table_schema, table_name from information_schema.columns where column_name = ?",
            [LOAD_ID],
        ).fetchall()
    }
    loads: dict[str, str | None] = {}
    for key, (schema, table) in sorted(tables.items()):
        if (schema, table) in found:
            query = f'select max({LOAD_ID}) from "{schema}"."{table}"'
            loads[key] = con.execute(query).fetchone()[0]
    return loads


def build_state(ctx: Context, vars_: str | None, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What a build reads: the project and the newest load of each source table."""
    loads = newest_loads(con, source_tables(ctx.target_dir))
    return {"project": project_fingerprint(ctx.project_dir, vars_), "source_loads": loads}


def state_now(ctx: Context, vars_: str | None) -> dict[str, Any]:
    """`build_state` of the warehouse as it is (a build that just ended records it)."""
    con = duckdb.connect(str(ctx.warehouse), read_only=True)
    try:
        return build_state(ctx, vars_, con)
    finally:
        con.close()

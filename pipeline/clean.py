"""`prune` and `reset`: a warehouse that holds what the project builds, or nothing.

    prune   drop the tables and views in the model layers (staging, intermediate,
            marts, quarantine, and any schema a current model writes) that no
            current model or seed of the project builds: a model that was deleted
            or renamed, or one of a source that is no longer declared
    reset   remove the warehouse, dlt's state beside it and the published file, so
            the next run loads every source again from the start

Both take the pipeline's lock, so neither runs under a pipeline run. The audit log
(data/audit.jsonl, or its table) keeps a row of each.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime

import duckdb

from warehouse import audit, fresh
from warehouse.lock import WarehouseLock
from warehouse.settings import pipelines_dir
from warehouse.sources import undeclared_dbt_sources
from warehouse.sql import quote

from .publish import PublishError, built_relations, temp_files
from .runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .steps import Context, dbt_command, run_command, tail

LAYERS = ("staging", "intermediate", "marts", "quarantine")


def leftover_relations(ctx: Context) -> list[tuple[str, str, str]]:
    """(schema, name, 'VIEW' | 'BASE TABLE') of every relation in the model layers that the
    project's current models and seeds do not build (after a fresh `dbt parse`)."""
    parsed = run_command(dbt_command(ctx, "parse", "--quiet"), ctx, capture_stdout=True)
    if parsed.returncode != 0:
        raise PublishError(f"dbt parse failed: {tail(parsed.stdout + parsed.stderr, 5)}")
    built = built_relations(
        ctx.target_dir / "manifest.json", undeclared_dbt_sources(ctx.project_dir)
    )
    schemas = {schema for schema, _ in built} | set(LAYERS)
    with duckdb.connect(str(ctx.warehouse), read_only=True) as con:
        present = con.execute(
            "select table_schema, table_name, table_type from information_schema.tables "
            "where table_catalog = current_database() order by 1, 2"
        ).fetchall()
    return [
        (schema, name, kind)
        for schema, name, kind in present
        if schema in schemas and (schema.lower(), name.lower()) not in built
    ]


def command_prune(args: argparse.Namespace, ctx: Context, arguments: list[str]) -> int:
    if not ctx.warehouse.exists():
        print(f"no warehouse at {ctx.warehouse}: nothing to prune")
        return EXIT_OK
    started = datetime.now(UTC)
    with WarehouseLock(ctx.warehouse) as lock:
        problem = lock.take(args.wait, "python -m pipeline prune", "prune")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_FAILED
        try:
            leftovers = leftover_relations(ctx)
        except (PublishError, duckdb.Error) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        dropped = [f"{schema}.{name}" for schema, name, _ in leftovers]
        if leftovers and not args.dry_run:
            with duckdb.connect(str(ctx.warehouse)) as con:
                for schema, name, kind in leftovers:
                    what = "view" if kind == "VIEW" else "table"
                    con.execute(f"drop {what} if exists {quote(schema)}.{quote(name)}")
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{verb} {len(dropped)}: {', '.join(dropped)}" if dropped else "nothing to prune")
    if not args.dry_run:
        audit.record("prune", arguments, EXIT_OK, started, {"dropped": dropped})
    return EXIT_OK


def command_reset(args: argparse.Namespace, ctx: Context, arguments: list[str]) -> int:
    state = pipelines_dir(ctx.warehouse)
    wal = ctx.warehouse.with_name(ctx.warehouse.name + ".wal")
    paths = [
        p
        for p in (
            ctx.warehouse,
            wal,
            state,
            ctx.analytics,
            *temp_files(ctx.analytics),
            *fresh.store_files(ctx.analytics),  # events of this warehouse's loads
        )
        if p.exists()
    ]
    if not paths:
        print(f"nothing to reset: no warehouse at {ctx.warehouse}")
        return EXIT_OK
    if not args.yes:
        print("reset removes:\n" + "\n".join(f"  {p}" for p in paths), file=sys.stderr)
        print("error: nothing removed; re-run with --yes to remove them", file=sys.stderr)
        return EXIT_USAGE
    started = datetime.now(UTC)
    with WarehouseLock(ctx.warehouse) as lock:
        problem = lock.take(args.wait, "python -m pipeline reset", "reset")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_FAILED
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    print("removed " + ", ".join(str(p) for p in paths))
    print("the next python -m pipeline run loads every source from the start")
    audit.record("reset", arguments, EXIT_OK, started, {"removed": [str(p) for p in paths]})
    return EXIT_OK

"""What the code location reads from the project: its declared sources, dbt's manifest and
the run schedule. Nothing here knows the sample domain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.scope import pipeline_setting
from pipeline.steps import Context, dbt_command, run_command
from warehouse.sources import undeclared_dbt_sources

SCHEDULE_ENV = "PIPELINE__SCHEDULE"
DEFAULT_SCHEDULE = "0 * * * *"  # hourly, UTC


@dataclass(frozen=True)
class Source:
    """A declared source: the raw tables it loads, and the folder a file source reads."""

    name: str
    kind: str
    tables: tuple[str, ...]
    folder: Path | None = None
    glob: str = ""


def sources(ctx: Context, inbox: str | None) -> list[Source]:
    """Every declared source as its kind describes it (`python -m ingestion describe`, a
    child process like every ingestion step): its raw tables and the folder and glob a
    file sensor watches. The location never branches on a kind's name."""
    command = [ctx.python, "-m", "ingestion", "describe", *(["--inbox", inbox] if inbox else [])]
    done = run_command(command, ctx, capture_stdout=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m ingestion describe failed (exit {done.returncode})")
    found = []
    for name, source in json.loads(done.stdout).items():
        folder, glob = source["watch"] or (None, "")
        found.append(
            Source(
                name,
                source["kind"],
                tuple(sorted(source["tables"])),
                Path(folder) if folder else None,
                glob,
            )
        )
    return found


def dbt_exclude(project_dir: Path) -> str | None:
    """The models of undeclared sources stay out, as in `python -m pipeline run`."""
    names = undeclared_dbt_sources(project_dir)
    return " ".join(f"source:{name}+" for name in names) or None


def parse_manifest(ctx: Context) -> Path:
    """`dbt parse` into its own target folder: the assets follow the models as they are now,
    and a run's artifacts in the project's target folder are left alone."""
    target = ctx.target_dir / "dagster"
    command = dbt_command(ctx, "parse", "--quiet", "--target-path", str(target))
    done = run_command(command, ctx, capture_stdout=True)
    if done.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return target / "manifest.json"


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def marts(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(manifest node, its relation `schema.table` as the monitor names it) of every mart."""
    return [
        (props, f"{props['schema']}.{props['alias']}")
        for props in manifest.get("nodes", {}).values()
        if props["resource_type"] == "model" and props["fqn"][1:2] == ["marts"]
    ]


def raw_tables(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(manifest source, its relation `schema.table` as the monitor names it) of every raw table."""
    return [
        (props, f"{props['schema']}.{props.get('identifier') or props['name']}")
        for props in manifest.get("sources", {}).values()
        if props["schema"] == "raw"
    ]


class ScheduleError(ValueError):
    """`[pipeline] schedule` is no cron expression."""


def run_schedule() -> str:
    """The runs' cron schedule (UTC): env PIPELINE__SCHEDULE, else `[pipeline] schedule`."""
    return pipeline_setting("schedule") or DEFAULT_SCHEDULE

"""What one `python -m ingestion` run did: a row per source, printed as a table and
written as JSON (`--summary-json`) for an orchestrator to read as data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from warehouse.audit import redact

# A source whose folder is as its last load left it (ingestion/unchanged.py): not run.
NOTHING_NEW = "nothing new"
# An API asked less than its `ask_every` ago: not run.
NOT_DUE = "not due"


@dataclass
class SourceReport:
    """What one source did in this run: the row of the summary table."""

    name: str
    status: str = "ok"  # ok | failed | interrupted | skipped | nothing new | not due
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
    dlt_pipeline: bool = True  # whether a dlt pipeline ran for it (not for nothing new)
    not_due: str | None = None  # why an API was not asked (ask_every)
    fresh_events: int | None = None  # events written to the speed layer (warehouse/fresh.py)


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


def write_json(path: Path, reports: list[SourceReport], exit_code: int) -> None:
    """The summary as data: {"exit_code": n, "sources": [report, ...]}, secrets redacted
    as in the printed one, written whole (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    document = {"exit_code": exit_code, "sources": [asdict(r) for r in reports]}
    temp.write_text(redact(json.dumps(document, indent=1)), encoding="utf-8")
    temp.replace(path)

"""What to monitor, read from dbt's artifacts (target/manifest.json, run_results.json).

The manifest is what dbt resolved (schemas after generate_schema_name, meta
merged from config and YAML, tests attached to their models), so the monitor
follows the project without a second list of tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import parse_time

FAILED_TEST_STATUSES = {"fail", "error"}
WARNED_TEST_STATUSES = {"warn"}


class UsageError(Exception):
    """A problem the user fixes (missing artifact, bad option): one line, exit code 2."""


@dataclass
class TestOutcome:
    """One dbt test on a monitored model, as the last run left it."""

    name: str
    column: str | None
    status: str
    failures: int | None
    message: str | None
    kind: str | None = None  # the generic test's name (`unique`, `not_null`, ...)
    filtered: bool = False  # configured with `where`: it saw only part of the table
    started_at: datetime | None = None  # start of dbt's execute step
    stored: str | None = None  # the relation holding its failing rows (store_failures)


@dataclass
class Target:
    """One table to measure: a dbt model or a source."""

    unique_id: str
    kind: str  # "model" or "source"
    schema: str
    identifier: str
    meta: dict[str, Any] = field(default_factory=dict)
    column_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    unique_key: list[str] | None = None
    loaded_at_field: str | None = None
    built_at: datetime | None = None
    freshness_disabled: bool = False  # a source declared `freshness: null`
    tests: list[TestOutcome] = field(default_factory=list)

    @property
    def name(self) -> str:
        """How the monitor names the table everywhere: `schema.table`."""
        return f"{self.schema}.{self.identifier}"

    @property
    def timestamp_column(self) -> str | None:
        value = self.meta.get("monitor_timestamp_column")
        return str(value) if value else None

    def key_proven_unique(self) -> TestOutcome | None:
        """A dbt `unique` test that passed on this build of the model's one-column key.

        Its query (`group by key having count(*) > 1` over the whole table) is the
        duplicate count itself, exact; recounting it right after costs the monitor
        a hash of every key, two scans' time. Trusted only when it ran on this
        very build: the model was built in the same invocation, the test started
        after that build finished, saw the whole table (no `where`) and found 0.
        Sources are always counted: a load may land between dbt and the monitor.
        """
        if self.kind != "model" or self.built_at is None or not self.unique_key:
            return None
        if len(self.unique_key) != 1:
            return None
        for test in self.tests:
            if (
                test.kind == "unique"
                and test.column == self.unique_key[0]
                and test.status == "pass"
                and test.failures == 0
                and not test.filtered
                and test.started_at is not None
                and test.started_at >= self.built_at
            ):
                return test
        return None


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}): re-run `dbt build`") from exc


def load_manifest(target_dir: Path) -> dict[str, Any]:
    path = target_dir / "manifest.json"
    if not path.exists():
        raise UsageError(f"no dbt manifest at {path}: run `dbt build` first")
    return read_json(path)


def load_run_results(target_dir: Path) -> dict[str, Any] | None:
    path = target_dir / "run_results.json"
    return read_json(path) if path.exists() else None


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    """Model meta: `config.meta` (dbt merges YAML `meta:` into it) over the top-level copy."""
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def _column_meta(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, column in (node.get("columns") or {}).items():
        merged = {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}
        out[column.get("name") or name] = merged
    return out


def _opted_out(meta: dict[str, Any]) -> bool:
    return str(meta.get("monitor", True)).strip().lower() in {"false", "0", "no", "off"}


def _opted_in(meta: dict[str, Any]) -> bool:
    return "monitor" in meta and not _opted_out(meta)


def _is_mart(node: dict[str, Any]) -> bool:
    config = node.get("config") or {}
    fqn = node.get("fqn") or []
    return "marts" in {node.get("schema"), config.get("schema")} or "marts" in fqn[1:-1]


def tested_node(test: dict[str, Any]) -> str | None:
    """The model or source a test checks (sources have no `attached_node`)."""
    if test.get("attached_node"):
        return str(test["attached_node"])
    nodes = (test.get("depends_on") or {}).get("nodes") or []
    return str(nodes[0]) if len(nodes) == 1 else None


def _unique_key(
    node: dict[str, Any], meta: dict[str, Any], unique_columns: list[str]
) -> list[str] | None:
    """meta.unique_key, else a one-column `unique` test, else the incremental key, else None."""
    declared = meta.get("unique_key")
    if declared:
        return [declared] if isinstance(declared, str) else [str(c) for c in declared]
    if unique_columns:
        primary = node.get("primary_key") or []
        for column in primary:
            if column in unique_columns:
                return [column]
        return [sorted(unique_columns)[0]]
    config_key = (node.get("config") or {}).get("unique_key")
    if config_key:
        return [config_key] if isinstance(config_key, str) else [str(c) for c in config_key]
    return None


def _execute_time(result: dict[str, Any], edge: str) -> datetime | None:
    """When dbt's execute step of one node started or completed (`edge`)."""
    for timing in result.get("timing") or []:
        if timing.get("name") == "execute" and timing.get(edge):
            return parse_time(timing[edge])
    return None


def _build_times(run_results: dict[str, Any] | None) -> dict[str, datetime]:
    """When each model was last built (end of dbt's execute step): its load time."""
    out: dict[str, datetime] = {}
    for result in (run_results or {}).get("results") or []:
        completed = _execute_time(result, "completed_at")
        if completed is not None:
            out[result["unique_id"]] = completed
    return out


def _downstream_of(manifest: dict[str, Any], source_names: frozenset[str]) -> set[str]:
    """Unique ids of the sources named here and of every node downstream of them."""
    found = {
        uid
        for uid, source in (manifest.get("sources") or {}).items()
        if source.get("source_name") in source_names
    }
    children = manifest.get("child_map") or {}
    pending = list(found)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def discover(
    manifest: dict[str, Any],
    run_results: dict[str, Any] | None,
    undeclared: frozenset[str] = frozenset(),
) -> list[Target]:
    """Marts and sources, minus `meta.monitor: false`, plus any model with `monitor: true`.

    Sources named in `undeclared` (no `[sources.<name>]` loads them) and every
    model downstream of one are left out: the pipeline does not build them.
    """
    nodes = manifest.get("nodes") or {}
    left_out = _downstream_of(manifest, undeclared)
    built = _build_times(run_results)
    outcomes = {r["unique_id"]: r for r in (run_results or {}).get("results") or []}
    targets: dict[str, Target] = {}
    for uid, node in nodes.items():
        if node.get("resource_type") != "model" or uid in left_out:
            continue
        config = node.get("config") or {}
        meta = _meta(node)
        if not config.get("enabled", True) or config.get("materialized") == "ephemeral":
            continue
        if _opted_out(meta) or not (_is_mart(node) or _opted_in(meta)):
            continue
        targets[uid] = Target(
            unique_id=uid,
            kind="model",
            schema=node["schema"],
            identifier=node.get("alias") or node["name"],
            meta=meta,
            column_meta=_column_meta(node),
            built_at=built.get(uid),
        )
    for uid, source in (manifest.get("sources") or {}).items():
        meta = {**(source.get("source_meta") or {}), **_meta(source)}
        if (
            uid in left_out
            or _opted_out(meta)
            or not (source.get("config") or {}).get("enabled", True)
        ):
            continue
        targets[uid] = Target(
            unique_id=uid,
            kind="source",
            schema=source["schema"],
            identifier=source.get("identifier") or source["name"],
            meta=meta,
            column_meta=_column_meta(source),
            loaded_at_field=source.get("loaded_at_field"),
            freshness_disabled="freshness" in source and source["freshness"] is None,
        )
    unique_columns: dict[str, list[str]] = {}
    for uid, test in nodes.items():
        if test.get("resource_type") != "test":
            continue
        owner = tested_node(test)
        if owner not in targets:
            continue
        metadata = test.get("test_metadata") or {}
        column = (metadata.get("kwargs") or {}).get("column_name") or test.get("column_name")
        if metadata.get("name") == "unique" and column:
            unique_columns.setdefault(owner, []).append(str(column))
        if uid in outcomes:
            result = outcomes[uid]
            targets[owner].tests.append(
                TestOutcome(
                    name=test.get("name") or uid,
                    column=str(column) if column else None,
                    status=str(result.get("status")),
                    failures=result.get("failures"),
                    message=result.get("message"),
                    kind=metadata.get("name"),
                    filtered=bool((test.get("config") or {}).get("where")),
                    started_at=_execute_time(result, "started_at"),
                    stored=test.get("relation_name")
                    if (test.get("config") or {}).get("store_failures")
                    else None,
                )
            )
    for uid, target in targets.items():
        node = nodes.get(uid) or (manifest.get("sources") or {}).get(uid) or {}
        target.unique_key = _unique_key(node, target.meta, unique_columns.get(uid, []))
    return sorted(targets.values(), key=lambda t: (t.kind != "model", t.name))

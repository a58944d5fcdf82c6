"""Quality thresholds: dbt vars (project defaults), model meta, column meta.

One source of truth for the dbt tests and the monitor: the monitor reads the
same keys from the same places dbt does, and falls back to the documented
defaults only when the project sets nothing.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, float] = {
    "missing_rate_warn": 0.05,
    "duplicate_rate_error": 0.01,
    "outlier_rate_warn": 0.10,
    "outlier_iqr_factor": 1.5,
    "freshness_warn_hours": 24.0,
    "freshness_error_hours": 48.0,
    # Anomalies against history (monitor only).
    "row_count_change_warn": 0.2,
    "anomaly_z_threshold": 3.0,
    "anomaly_min_points": 7.0,
}


def project_vars(project_dir: Path, run_results: dict[str, Any] | None) -> dict[str, Any]:
    """The vars dbt resolved: dbt_project.yml, overridden by the last run's `--vars`.

    dbt 1.11's manifest does not carry project vars, so dbt_project.yml is read
    directly; run_results.json records the `--vars` given on the command line.
    Vars scoped to the project (`vars: {ml_warehouse: {...}}`) count too.
    """
    resolved: dict[str, Any] = {}
    path = project_dir / "dbt_project.yml"
    if path.exists():
        project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        raw = project.get("vars") or {}
        name = project.get("name")
        resolved.update({k: v for k, v in raw.items() if not isinstance(v, dict)})
        if name and isinstance(raw.get(name), dict):
            resolved.update(raw[name])
    cli_vars = ((run_results or {}).get("args") or {}).get("vars") or {}
    if isinstance(cli_vars, dict):
        resolved.update(cli_vars)
    return resolved


def _number(value: Any, key: str) -> float | None:
    """A threshold as a float; a value dbt would render (jinja) or garbage is skipped."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        print(f"warning: ignoring non-numeric quality setting {key}={value!r}", file=sys.stderr)
        return None


class Thresholds:
    """Resolves one key: column meta, then model meta, then project vars, then defaults."""

    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables

    def get(
        self,
        key: str,
        model_meta: dict[str, Any] | None = None,
        column_meta: dict[str, Any] | None = None,
    ) -> float:
        for scope in (column_meta, model_meta, self.variables):
            if scope and key in scope:
                value = _number(scope[key], key)
                if value is not None:
                    return value
        return DEFAULTS[key]


def parse_time(text: str) -> datetime:
    """An ISO timestamp as an aware UTC datetime (a naive one is taken as UTC)."""
    parsed = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)

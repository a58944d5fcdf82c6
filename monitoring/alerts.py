"""Alerts: what crossed a threshold, printed, written as JSON, and posted to a webhook."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .manifest import tested_node
from .metrics import ERROR, OK, WARN, Measurement, Metric

SUMMARY_METRICS = {"dbt_tests_failed", "dbt_tests_warned"}  # alerted per test instead
SEVERITY_ORDER = {ERROR: 0, WARN: 1}


def build_problems(
    manifest: dict[str, Any], run_results: dict[str, Any] | None, monitored: set[str]
) -> list[Metric]:
    """Failures of the last `dbt build` that no monitored table carries.

    A failed test on a staging model skips the marts downstream, which then
    still hold the previous run's rows and measure as healthy: the failure
    itself, and every model it left unbuilt, must raise an error. (Tests on
    monitored tables are alerted with their table, in `collect`.)
    """
    nodes = manifest.get("nodes") or {}
    alerts = []
    for result in (run_results or {}).get("results") or []:
        uid, status = str(result.get("unique_id")), str(result.get("status"))
        kind = uid.split(".", 1)[0]
        if kind == "test" and status in {"fail", "error"}:
            if tested_node(nodes.get(uid) or {}) in monitored:
                continue
            message = f"dbt test {uid} {status}: {result.get('message') or 'no message'}"
        elif kind in {"model", "seed", "snapshot"} and status in {"error", "skipped"}:
            message = f"dbt {kind} {uid} {status}: its table keeps the previous run's rows"
        else:
            continue
        name = uid.split(".")[-1] if kind != "test" else uid.split(".")[2]
        alerts.append(Metric(f"dbt.{name}", None, f"dbt_{kind}", 1.0, 0.0, ERROR, message))
    return alerts


def collect(
    measurements: list[Measurement], anomalies: list[Metric], build: list[Metric] | None = None
) -> list[Metric]:
    """Every metric that is not ok, one alert per failed/warned dbt test, the anomalies,
    and the build's own failures (`build_problems`)."""
    alerts: list[Metric] = list(build or [])
    for m in measurements:
        alerts += [x for x in m.metrics if x.status != OK and x.metric not in SUMMARY_METRICS]
        for test in m.target.tests:
            if test.status in {"fail", "error", "warn"}:
                severity = WARN if test.status == "warn" else ERROR
                failures = test.failures if test.failures is not None else 0
                alerts.append(
                    Metric(
                        m.target.name,
                        test.column,
                        "dbt_test",
                        float(failures),
                        0.0,
                        severity,
                        f"dbt test {test.name} {test.status}: {test.message or 'no message'}",
                    )
                )
    alerts += anomalies
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER.get(a.status, 2), a.model, a.metric))


def as_dict(alert: Metric) -> dict[str, Any]:
    return {
        "model": alert.model,
        "column": alert.column,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "severity": alert.status,
        "message": alert.message,
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def console_table(alerts: list[Metric]) -> str:
    """A plain-text table, one alert a line (what a person scans after a run)."""
    if not alerts:
        return "no alerts"
    header = ("severity", "model", "column", "metric", "value", "threshold", "message")
    rows = [
        (a.status, a.model, a.column or "", a.metric, _fmt(a.value), _fmt(a.threshold), a.message)
        for a in alerts
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, str(r[-1])]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  -------")
    return "\n".join(lines)


def write_json(path: Path, run: dict[str, Any], alerts: list[Metric]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": run["run_id"],
        "measured_at": run["started_at"].isoformat(),
        "dbt_invocation_id": run["dbt_invocation_id"],
        "check": run["check"],
        "alerts": [as_dict(a) for a in alerts],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def post_webhook(
    url: str,
    alerts: list[Metric],
    summary: str,
    attempts: int = 3,
    timeout: float = 5.0,
    backoff: float = 0.25,
) -> bool:
    """POST a Slack-compatible payload; retried, never raises (a down webhook is not bad data).

    Only the host is logged: webhook URLs usually embed their secret.
    """
    host = urllib.parse.urlsplit(url).netloc or "webhook"
    body = json.dumps(
        {"text": summary, "alerts": [as_dict(a) for a in alerts]}, default=str
    ).encode()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            problem = str(getattr(exc, "reason", exc))
        print(
            f"warning: webhook attempt {attempt}/{attempts} to {host} failed: {problem}",
            file=sys.stderr,
        )
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    print(f"warning: webhook to {host} not delivered after {attempts} attempts", file=sys.stderr)
    return False

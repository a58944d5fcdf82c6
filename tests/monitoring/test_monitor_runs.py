"""Across runs: history, anomalies, alerts out (JSON, webhook), the HTML report, the CLI."""

from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from monitoring.cli import main

if TYPE_CHECKING:
    from conftest import Project

REPO = Path(__file__).resolve().parents[2]


def fill(project: Project, rows: int, table: str = "marts.counts") -> None:
    project.sql(
        "create schema if not exists marts",
        f"create or replace table {table} as select range as id from range({rows})",
    )


def anomaly_alerts(project: Project) -> list[dict[str, Any]]:
    return [
        a for a in project.alerts() if a["metric"] == "row_count_change" or "zscore" in a["metric"]
    ]


def test_history_accumulates_and_a_row_count_drop_is_an_anomaly(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.model("counts", unique=["id"])
    for _ in range(3):
        fill(project, 100)
        assert project.run() == 0
        assert anomaly_alerts(project) == []
    points = project.query(
        "select value from monitoring.quality_metrics "
        "where model = 'marts.counts' and metric = 'row_count' order by measured_at"
    )
    assert points == [(100.0,), (100.0,), (100.0,)]
    capsys.readouterr()
    assert main(["history", "--model", "marts.counts", "--metric", "row_count"]) == 0
    out = capsys.readouterr().out
    assert "| marts.counts | row_count |  | 3 |" in out

    fill(project, 50)
    assert project.run() == 0  # an anomaly is a warning
    [alert] = anomaly_alerts(project)
    assert (alert["model"], alert["metric"], alert["severity"]) == (
        "marts.counts",
        "row_count_change",
        "warn",
    )
    assert (alert["value"], alert["threshold"]) == (-0.5, 0.2)
    assert "-50.0%" in alert["message"]
    assert project.query(
        "select count(*) from monitoring.quality_alerts where metric = 'row_count_change'"
    ) == [(1,)]
    assert project.query("select count(*) from monitoring.quality_runs") == [(4,)]


def test_static_series_raises_no_anomaly(project: Project) -> None:
    project.model("counts", unique=["id"])
    fill(project, 100)
    for _ in range(9):
        assert project.run() == 0
    assert anomaly_alerts(project) == []


def test_z_score_needs_seven_points(project: Project) -> None:
    # row counts wobble by one; then a jump of 10% (below the change limit) is far out
    project.model("counts", unique=["id"], meta={"row_count_change_warn": 0.5})
    for i, rows in enumerate([100, 101, 100, 101, 100, 101]):
        fill(project, rows)
        project.run()
        assert anomaly_alerts(project) == [], i
    fill(project, 110)
    project.run()  # only six earlier points: no z-score yet
    assert anomaly_alerts(project) == []
    fill(project, 100)
    project.run()
    fill(project, 125)
    project.run()  # eight earlier points; 125 is many deviations out
    [alert] = anomaly_alerts(project)
    assert alert["metric"] == "row_count_zscore" and alert["value"] > 3


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        self.received.append(
            {"type": self.headers["Content-Type"], "body": json.loads(self.rfile.read(length))}
        )
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token", received
    server.shutdown()
    server.server_close()


def test_webhook_receives_the_alerts(
    project: Project, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    project.sql(
        "create schema marts",
        "create table marts.t (v varchar)",
        "insert into marts.t values (null), ('x')",
    )
    project.model("t")
    assert project.run("--webhook-url", url) == 0
    [request] = received
    assert request["type"] == "application/json"
    body = request["body"]
    assert body["text"].startswith("WARN: 1 tables monitored")
    assert body["alerts"] == project.alerts()
    assert {(a["column"], a["metric"], a["severity"]) for a in body["alerts"]} == {
        ("v", "missing_rate", "warn"),
        (None, "missing_rate", "warn"),
    } and all(
        set(a) == {"model", "column", "metric", "value", "threshold", "severity", "message"}
        for a in body["alerts"]
    )


def test_down_webhook_does_not_fail_the_monitor(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project.sql(
        "create schema marts",
        "create table marts.t (id integer)",
        "insert into marts.t values (1), (1)",
    )
    project.model("t", unique=["id"])
    monkeypatch.setenv("MONITORING_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook/secret-token")
    project.write()
    assert main(project.args()) == 1  # the data's health: a duplicate-rate error
    err = capsys.readouterr().err
    assert f"webhook to 127.0.0.1:{port} not delivered after 3 attempts" in err
    assert "secret-token" not in err


class ReportParser(HTMLParser):
    """Sections by data-model, and what each holds."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, int]] = {}
        self.current: str | None = None
        self.depth = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for key in ("src", "href"):
            value = attributes.get(key) or ""
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag in {"script", "link", "img", "iframe"}:
            self.external.append(tag)
        if tag == "section" and "model" in (attributes.get("class") or ""):
            self.current = attributes["data-model"] or ""
            self.sections[self.current] = {"svg": 0, "marks": 0}
            self.depth = 0
        if self.current is not None:
            if tag == "section":
                self.depth += 1
            if tag == "svg":
                self.sections[self.current]["svg"] += 1
            if tag in {"polyline", "circle"}:
                self.sections[self.current]["marks"] += 1

    def handle_endtag(self, tag: str) -> None:
        if self.current is not None and tag == "section":
            self.depth -= 1
            if self.depth == 0:
                self.current = None


def test_report_has_every_model_with_charts(project: Project) -> None:
    fill(project, 10)
    fill(project, 5, 'marts."we""ird <tab>"')
    project.sql(
        "create schema raw",
        "create table raw.src (id integer, _loaded_at timestamp)",
        "insert into raw.src values (1, '2026-01-10 10:00:00')",
    )
    project.model("counts", unique=["id"])
    project.model("weird", alias='we"ird <tab>')
    project.source("app", "src")
    for _ in range(2):
        project.run()
    report = (project.target_dir / "quality_report.html").read_text("utf-8")
    parser = ReportParser()
    parser.feed(report)
    assert set(parser.sections) == {"marts.counts", 'marts.we"ird <tab>', "raw.src"}
    for name, found in parser.sections.items():
        assert found["svg"] >= 4, name  # row_count, column_count, missing_rate, duplicate_rate
        assert found["marks"] > 0, name
    assert parser.external == []  # no scripts, stylesheets or images from anywhere
    assert "we&quot;ird &lt;tab&gt;" in report and "<tab>" not in report
    assert "polyline" in report  # two runs: a line, not just a dot


def test_subprocess_run_and_history(project: Project, tmp_path: Path) -> None:
    fill(project, 20)
    project.model("counts", unique=["id"])
    project.write()
    env = {**os.environ, "WAREHOUSE_PATH": str(project.warehouse), "PYTHONPATH": str(REPO)}
    env.pop("MONITORING_WEBHOOK_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "monitoring", *project.args("--report", str(tmp_path / "r.html"))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "| marts.counts | 20 | 1 |" in result.stdout
    assert "no alerts" in result.stdout
    assert (tmp_path / "r.html").exists()
    history = subprocess.run(
        [sys.executable, "-m", "monitoring", "history", "--since", "7d"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert history.returncode == 0, history.stderr
    assert "| marts.counts | row_count |  | 1 |" in history.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "monitoring", "--target-dir", str(tmp_path / "nowhere")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("run `dbt build` first")
    assert "Traceback" not in missing.stderr


def test_locked_warehouse_is_one_clear_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(project, 3)
    project.model("counts")
    project.write()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('ready', flush=True); sys.stdin.read()",  # holds until killed
            str(project.warehouse),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert main(project.args()) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert "is another process writing it?" in err and "Traceback" not in err


def test_the_report_leads_with_what_failed_and_shows_its_failing_rows(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing row-level test that stored its rows, beside a healthy table: the first
    screen lists exactly the failure, the failing table's section is open with a sample of
    the stored rows and the query for all of them, and the healthy table is collapsed."""
    fill(project, 10)
    project.sql(
        "create or replace table marts.orders as select range as id, range - 3 as amount"
        " from range(10)",
        "create schema audit",
        "create table audit.accepted_range_orders_amount as"
        " select * from marts.orders where amount < 0",
    )
    project.model("counts", unique=["id"])
    orders = project.model("orders")
    project.test(
        orders,
        "accepted_range",
        "amount",
        status="fail",
        failures=3,
        stored='"warehouse"."audit"."accepted_range_orders_amount"',
    )
    monkeypatch.setenv("PIPELINE_RUN_ID", "run-4f9a29ee")
    assert project.run() == 1
    report = (project.target_dir / "quality_report.html").read_text("utf-8")

    assert "pipeline run run-4f9a29ee" in report
    first_screen = report[report.index('id="attention"') : report.index("<h2>Tables</h2>")]
    assert "Needs attention: 1 errors, 0 warnings" in first_screen
    assert first_screen.count('<tr class="alert">') == 1
    assert (
        "<td>marts.orders</td><td>amount</td><td>dbt_test</td>"
        '<td class="num">3</td><td class="num">0</td>'
    ) in first_screen

    orders_section = html.unescape(report[report.index('data-model="marts.orders"') :])
    assert orders_section.startswith('data-model="marts.orders">\n<details open>')
    assert "3 of 3 failing rows; all of them: " in orders_section
    assert '<code>select * from "warehouse"."audit"."accepted_range_orders_amount"</code>' in (
        orders_section
    )
    sample = orders_section[orders_section.index('class="failing-rows"') :]
    sample = sample[: sample.index("</table>")]
    assert sample.count("<tr>") == 4  # the header and the 3 stored rows
    assert "<td>0</td><td>-3</td>" in sample
    counts_section = report[report.index('data-model="marts.counts"') :]
    assert counts_section.startswith('data-model="marts.counts">\n<details><summary>')
    assert "1 of 1 passed" in report  # the unique test of marts.counts


def test_a_clean_run_says_nothing_failed_and_reads_freshness_in_human_units(
    project: Project,
) -> None:
    project.sql(
        "create schema raw",
        "create table raw.src (id integer, _loaded_at timestamp)",
        "insert into raw.src values (1, '2026-01-10 11:30:00')",  # 30 minutes before NOW
    )
    project.source("app", "src")
    assert project.run() == 0
    report = (project.target_dir / "quality_report.html").read_text("utf-8")
    assert "<h2>Nothing failed or warned</h2><p>1 tables measured, 0 dbt tests passed.</p>" in (
        report
    )
    freshness = '<td>freshness_hours</td><td>_loaded_at</td><td class="num">30 min</td>'
    assert f'{freshness}<td class="num">24.0 h</td>' in report

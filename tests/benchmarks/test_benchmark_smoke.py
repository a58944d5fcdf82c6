"""Smoke test of `benchmarks/run.py` at 10k rows: every benchmark runs and is reported.

The numbers are not asserted (machines are noisy; the targets are for the 1M and
10M runs); what is checked is that each row of the table is measured, printed
and written to the results JSON with a baseline from the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from benchmarks import scale

ROOT = Path(__file__).resolve().parents[2]
ROW_IDS = [
    "csv_ingest",
    "csv_ingest_dlt",
    "csv_ingest_pandas",
    "stream_ingest",
    "stream_ingest_dlt",
    "stream_rss",
    "users_time",
    "users_rss",
    "pipeline_time",
    "pipeline_floor",
    "pipeline_rss",
    "incremental",
    "incremental_hundredth",
    "incremental_fixed",
    "nothing_new",
    "nothing_due",
    "monitor",
    "peer_read_csv",
    "peer_read_csv_duckdb",
    "peer_read_jsonl",
    "startup",
]


def run_script(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """A benchmark script with a work and a results folder under tmp_path; it must pass."""
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, *args, "--work", str(tmp_path / "work"), "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done, results


def run_benchmark(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`benchmarks/run.py` at 10k rows, one repetition: what it printed and its results JSON."""
    script = str(ROOT / "benchmarks" / "run.py")
    done, results = run_script(tmp_path, script, "--rows", "10000", "--repeat", "1", *extra)
    [path] = results.glob("*-10000.json")
    return done, json.loads(path.read_text())


@pytest.mark.slow
@pytest.mark.bench
def test_benchmark_runs_at_10k_rows_and_reports_every_row(tmp_path: Path) -> None:
    done, report = run_benchmark(tmp_path)
    assert [row["id"] for row in report["table"]] == ROW_IDS
    for row in report["table"]:
        # a peer that fails on the sample has no ratio; it is reported with its error
        failed = row["id"].startswith("peer_") and row["baseline"].startswith("fails after")
        assert row["ratio"] > 0 or failed, row
        assert f"| {row['benchmark']} |" in done.stdout
    assert "| benchmark | ours | baseline | ratio | target | met |" in done.stdout

    # Each comparison has its measurements and its same-run baseline.
    assert report["params"] == {
        "rows": 10000,
        "repeat": 1,
        "pipeline_repeat": 1,
        "seed": 42,
        "segment_size": 5000,
        "events_per_user": 10,
        "only": ["csv", "jsonl", "peers", "pipeline", "users"],
    }
    assert report["csv_ingest"]["rows"] == report["sample"]["csv"]["csv_rows"] == 11839
    assert report["stream_ingest"]["rows"] == report["sample"]["stream"]["event_lines"] == 10100
    for key, baselines in {
        "csv_ingest": ("ours", "duckdb", "dlt", "pandas"),
        "stream_ingest": ("ours", "duckdb", "dlt"),
        "users_chain": ("ours", "pandas", "duckdb"),
        "pipeline": ("ours", "pandas", "duckdb"),
        "incremental": ("ours",),
    }.items():
        for name in baselines:
            assert len(report[key][name]["seconds"]) == 1
            assert report[key][name]["median_rss_mb"] > 0
    assert report["users_chain"]["rows"] == 11839
    assert set(report["users_chain"]["steps"]) == {"ingest", "dbt_build"}
    assert set(report["pipeline"]["steps"]) == {"ingest", "dbt_build", "monitor"}
    (by_source,) = report["pipeline"]["ingest_seconds_by_source"]
    assert set(by_source) == {"users", "orders", "events", "products"}
    assert report["incremental"]["rows_added"] == 101
    # every pipeline row says how far it is from the DuckDB-only reference
    for row in report["table"]:
        if row["id"] in ("users_time", "pipeline_time", "incremental", "nothing_new"):
            assert "× the DuckDB-only reference (" in row["note"], row
    # the re-run rebuilds what the new events reach, not the users chain, and tests their rows
    [scope] = report["incremental"]["build_scope"]
    assert scope.startswith("new rows in events.events; tests scoped to rows after ")
    # and says where that build spent: the nodes it ran, not the users chain it left alone
    [slowest] = report["incremental"]["slowest_nodes"]
    assert "stg_events__events" in slowest and "stg_users__user_versions" not in slowest
    # and the same 1% run on a hundredth of the events, its fixed part
    hundredth = report["incremental"]["hundredth"]
    assert (hundredth["events"], hundredth["rows_added"]) == (1010, 10)
    assert hundredth["build_scope"][0].startswith("new rows in events.events; tests scoped")
    # the fixed part was timed (fixed_costs fails the run if that ingest loaded any row)
    fixed = report["incremental"]["fixed"]
    assert set(fixed) == {
        "pipeline_run_nothing_new",
        "pipeline_run_nothing_due",  # the API within its ask_every: fixed_costs checks it
        "ingest_nothing_new",
        "dbt_build_no_node",
    }
    assert "nothing_due" in {row["id"] for row in report["table"]}
    assert all(len(series["seconds"]) == 1 for series in fixed.values())
    assert report["monitor"]["table"] == "marts.fct_events"
    assert report["monitor"]["monitor_seconds"] > 0
    # dlt's filesystem readers on the same files: a time, or the error they stopped on
    assert set(report["peers"]) == {"read_csv", "read_csv_duckdb", "read_jsonl"}
    for peer in report["peers"].values():
        assert peer["ours"]["seconds"] > 0
        assert peer["peer"]["error"] if peer["peer"]["failed"] else peer["peer"]["rows"] > 0


def test_only_runs_the_named_parts(tmp_path: Path) -> None:
    _, report = run_benchmark(tmp_path, "--only", "jsonl")
    assert [row["id"] for row in report["table"]] == [
        "stream_ingest",
        "stream_ingest_dlt",
        "stream_rss",
        "startup",
    ]
    assert "csv" not in report["sample"] and "csv_ingest" not in report
    assert not (tmp_path / "work" / "csv").exists()  # no CSV sample made for nothing


def test_the_10m_memory_target_is_judged_in_megabytes() -> None:
    """≤ 1 GB is a limit on our peak RSS, not on its ratio to DuckDB's."""
    from benchmarks.run import verdicts

    def stream_rss_row(rss_mb: float) -> dict[str, object]:
        run = {"median_seconds": 30.0, "median_rss_mb": rss_mb}
        baseline = {"median_seconds": 9.0, "median_rss_mb": 330.0}
        results = {
            "params": {"repeat": 1, "pipeline_repeat": 1},
            "startup": {
                "ingestion_cli": {"median_seconds": 0.8},
                "python_duckdb": {"median_seconds": 0.1},
            },
            "stream_ingest": {
                "rows": 10_100_000,
                "ours": run,
                "duckdb": baseline,
                "dlt": baseline,
            },
        }
        return next(row for row in verdicts(results) if row["id"] == "stream_rss")

    assert stream_rss_row(935.0)["met"] is True  # 2.8x DuckDB's RSS, under 1 GB
    assert stream_rss_row(1100.0)["met"] is False


@pytest.mark.bench
def test_scale_curve_at_two_small_sizes(tmp_path: Path) -> None:
    """`python -m benchmarks.scale`: a full and a 1% run per size, the table, JSON and plot."""
    done, results = run_script(tmp_path, "-m", "benchmarks.scale", "--events", "5000,10000")
    [path] = results.glob("*-scale.json")
    report = json.loads(path.read_text())
    assert [p["events"] for p in report["points"]] == [5050, 10100]  # 1% planted duplicates
    for point in report["points"]:
        assert point["incremental"]["rows_added"] == point["events"] // 100
        assert point["incremental"]["share_of_full"] > 0
        assert point["incremental"]["build_scope"][0].startswith("new rows in events.events")
        assert point["full"]["floor_ratio"] > 0 and point["full"]["duckdb_reference_seconds"] > 0
    assert [t["met"] in (True, False) for t in report["targets"]] == [True, True, True]
    assert "| 10,100 |" in done.stdout
    assert path.with_suffix(".svg").read_text().startswith("<svg")
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_the_scale_plot_labels_both_axes_of_each_unit_and_no_text_overlaps(
    tmp_path: Path,
) -> None:
    """The docs' scale curve, redrawn from the stored results: a panel per unit, each with
    a title and both axes labelled, and no two labels drawn over each other."""
    stored = ROOT / "benchmarks" / "results" / "2026-12-04-scale.json"
    out = tmp_path / "curve.svg"
    assert scale.main(["--plot", str(stored), "--out", str(out)]) == 0
    svg = ElementTree.fromstring(out.read_text())
    panels = svg.findall("{http://www.w3.org/2000/svg}g")
    assert len(panels) == 2
    for group in panels:
        texts = [t for t in group.iter("{http://www.w3.org/2000/svg}text")]
        words = {t.text for t in texts}
        assert "events (log scale)" in words
        assert words & {"seconds per million events", "share of the full run"}
        boxes = [  # ~7 px a character, 12 px high, anchored as drawn; axis titles aside
            text_box(t) for t in texts if "rotate" not in t.get("transform", "")
        ]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                assert apart, (a, b)


def text_box(text: ElementTree.Element) -> tuple[float, float, float, float]:
    width = 7.0 * len(text.text or "")
    x, y = float(text.get("x", 0)), float(text.get("y", 0))
    anchor = text.get("text-anchor", "start")
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return left, y - 12, left + width, y


@pytest.mark.bench
def test_the_speed_layer_benchmark_measures_xadd_to_answer(tmp_path: Path) -> None:
    """`benchmarks/fresh.py --smoke`: tracer events measured from XADD to the API's answer,
    and the API's own lookups under the stream, each with its target."""
    out = tmp_path / "fresh.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fresh", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["rate"] == 1000 and row["samples"] > 0 and row["api_requests"] > 0
    assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert row["p95_target_ms"] == 2000
    assert "| 1,000/s |" in done.stdout

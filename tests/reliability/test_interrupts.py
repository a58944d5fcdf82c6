"""`python -m ingestion` killed or stopped mid-load, or its dlt folder lost: nothing lost.

Each test runs the real command as a child process on `big_sample` and signals
it when dlt's working folder shows the phase to hit (an extract in progress, a
normalized package being loaded).
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    TOKEN,
    BigSample,
    Warehouse,
    assert_raw_exact,
    kill9_at,
    make_warehouse,
    signal_at,
)

from demo.api import serve

pytestmark = pytest.mark.slow


def extracting(warehouse: Warehouse, source: str) -> bool:
    """dlt is writing an extract package (its folder under normalize/, not yet `extracted`)."""
    folder = warehouse.dlt_dir / f"ml_warehouse_{source}" / "normalize"
    return any(p.name != "extracted" for p in folder.glob("*") if p.is_dir())


def normalized(warehouse: Warehouse, source: str) -> bool:
    """Normalize just committed its package into load/ (dlt: "do not kill this process")."""
    folder = warehouse.dlt_dir / f"ml_warehouse_{source}" / "load" / "normalized"
    return any(folder.glob("*"))


def loading(warehouse: Warehouse, source: str) -> bool:
    """The load has finished some jobs of the package and not the others."""
    folder = warehouse.dlt_dir / f"ml_warehouse_{source}" / "load" / "normalized"
    return any(folder.glob("*/completed_jobs/*"))


def ingest_args(sample: BigSample, url: str) -> tuple[str, ...]:
    return ("-m", "ingestion", "--inbox", str(sample.inbox), "--api-url", url)


def test_sigkill_mid_load_then_one_rerun_loads_everything_once(
    big_sample: BigSample, tmp_path: Path
) -> None:
    """Three runs killed (-9) in different phases; the fourth completes with exact counts."""
    warehouse = make_warehouse(tmp_path / "wh")
    kills = [
        ("users", extracting),  # nothing committed yet
        ("orders", loading),  # users loaded, orders' package half-way through its jobs
        ("events", normalized),  # between normalize's commit and its clean-up
    ]
    with serve(big_sample.inbox, token=TOKEN) as url:
        for source, phase in kills:
            run = warehouse.start(*ingest_args(big_sample, url))
            kill9_at(
                run,
                lambda source=source, phase=phase: phase(warehouse, source),
                f"{source} {phase.__name__}",
            )
        final = warehouse.run(*ingest_args(big_sample, url))
    assert final.returncode == 0, final.stdout + final.stderr
    # The last kill left a package in the load: the next run finished it before extracting.
    assert "events: finishing the load an interrupted run left pending" in final.stderr
    assert "| events | ok |" in final.stdout
    assert_raw_exact(warehouse, big_sample)


def test_sigterm_stops_cleanly_and_the_next_run_completes(
    big_sample: BigSample, tmp_path: Path
) -> None:
    warehouse = make_warehouse(tmp_path / "wh")
    with serve(big_sample.inbox, token=TOKEN) as url:
        first = warehouse.start(*ingest_args(big_sample, url))
        # During the events extract: dlt checks the signal between items there. (An
        # append load runs its jobs at once, so a signal mid-load finds them done.)
        stopped = signal_at(
            first, lambda: extracting(warehouse, "events"), signal.SIGTERM, "events extracting"
        )
        again = warehouse.run(*ingest_args(big_sample, url))
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "Traceback" not in stopped.stderr
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: interrupted by SIGTERM; not loaded: events, products; run python -m ingestion "
        "again to finish (it completes what this run left pending first)"
    ]
    assert "| events | interrupted |" in stopped.stdout
    assert "| products | skipped |" in stopped.stdout
    assert again.returncode == 0, again.stdout + again.stderr
    assert_raw_exact(warehouse, big_sample)


def test_lost_dlt_folder_state_comes_back_from_the_warehouse(
    sample_warehouse: Any, tmp_path: Path
) -> None:
    """dlt's working folder deleted between runs: nothing is read or loaded twice."""
    warehouse = make_warehouse(tmp_path / "wh")
    shutil.copy2(sample_warehouse.warehouse, warehouse.path)  # the warehouse only, no dlt folder
    before = {
        t: warehouse.query(f"select count(*), sum(hash(_dlt_load_id)) from raw.{t}")
        for t in ("users", "events", "orders", "products", "_rejected_rows")
    }
    with serve(sample_warehouse.inbox, token=TOKEN) as url:
        done = warehouse.run(
            *("-m", "ingestion", "--inbox", str(sample_warehouse.inbox), "--api-url", url),
            env={"SOURCES__ORDERS__API_TOKEN": TOKEN},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    for source in ("users", "orders", "events", "products"):
        assert f"| {source} | ok | 0 | 0 | 0 | 0 |" in done.stdout
    after = {
        t: warehouse.query(f"select count(*), sum(hash(_dlt_load_id)) from raw.{t}") for t in before
    }
    assert after == before

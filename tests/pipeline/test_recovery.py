"""`kill -9` in every step, then a new run: it completes and publishes exactly the clean result."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pipeline_sites import Site, clone, kill9, marts, sha256, wait_for
from project_env import SAMPLE_TOKEN

from demo.api import serve

pytestmark = pytest.mark.slow

# Each run is killed as soon as the lock file names the step (the ledger has it by then);
# publish once its pause hook says its temp file is written. The site is a published
# warehouse with nothing new: a run reaches the monitor without building; a small build
# reaches publish (the same code whatever was built); --full-check makes it build.
KILLS = {
    "ingest": (),
    "monitor": (),
    "publish": ("--sources", "products", "--select", "stg_products__products"),
    "build": ("--full-check",),
}


def test_kill_9_in_each_step_then_a_run_completes(
    published: Site, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    site = clone(published, tmp_path / "site")
    before = sha256(site.analytics)
    baseline = len(site.ledger())
    paused = tmp_path / "paused"
    pause = {"PIPELINE_TEST_PAUSE": "publish:600", "PIPELINE_TEST_PAUSED": str(paused)}
    with serve(site.inbox, token=SAMPLE_TOKEN) as url:
        for step, args in KILLS.items():
            run = site.start(*site.run_args(url, *args), env=pause)
            running.append(run)
            wait_for(
                lambda run=run, step=step: (
                    site.holder().get("pid") == run.pid and site.holder().get("step") == step
                ),
                600,
                f"step {step}",
                run,
            )
            if step == "publish":
                wait_for(paused.exists, 600, "publish to pause with its temp file written", run)
            assert run.poll() is None, f"the run ended before the kill in {step}"
            kill9(run)
            assert sha256(site.analytics) == before  # nothing half-published
            # The killed publish leaves its temp file (never the real one) until the next publish.
            temps = list(site.root.glob(".analytics.duckdb.*.tmp"))
            assert len(temps) == (step in ("publish", "build"))
        final = site.pipeline(*site.run_args(url))
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert "marked 1 dead run(s) abandoned" in final.stderr  # each run marks its predecessor
    rows = site.ledger()[baseline:]
    assert [r["status"] for r in rows] == ["abandoned"] * 4 + ["succeeded"]
    for row, step in zip(rows, KILLS, strict=False):
        assert row["error"] == f"the run died (killed or crashed) during step {step}"
        assert row[f"{step}_status"] == "running" and row["published"] is False
    assert not list(site.root.glob(".analytics.duckdb.*"))
    assert marts(site.analytics) == marts(published.analytics)  # no duplicated or missing rows

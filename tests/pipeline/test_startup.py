"""The orchestrator and the monitor start without dlt or dbt: they only run the steps
as child processes and read the warehouse, and importing dlt costs every command
about half a second (`python -m pipeline --help`: 0.3 s with it left out, 0.8 s before)."""

from __future__ import annotations

import subprocess
import sys

from project_env import ROOT

IMPORTED = (
    "import sys, pipeline.cli, monitoring.cli; print(sorted({'dlt', 'dbt'} & set(sys.modules)))"
)


def test_pipeline_and_monitor_commands_do_not_import_dlt_or_dbt() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

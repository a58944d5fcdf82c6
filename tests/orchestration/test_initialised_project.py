"""The code location on a project of one's own: what `python -m pipeline init` wrote, one
declared source, its scaffold and one mart; none of the sample domain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from dagster import AssetKey

from orchestration.location import PUBLISHED, REJECTED_ROWS, build_definitions
from pipeline.init import init

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

CONFIG = """
[sources.flights]
kind = "csv"
folder = "data/inbox/flights"
key = "flight_id"
"""
MART_SQL = "select flight_id, carrier from {{ ref('stg_flights__flights') }} where is_current\n"
CARRIERS_SQL = "select distinct carrier from {{ ref('stg_flights__flights') }}\n"
MART_YML = """version: 2
models:
  - name: fct_flights
    columns:
      - {name: flight_id, data_type: bigint}
      - {name: carrier, data_type: varchar}
"""


def test_the_location_loads_on_an_initialised_project(tmp_path: Path) -> None:
    project = tmp_path / "flights"
    init(project)
    config = project / ".dlt" / "config.toml"
    config.write_text(config.read_text() + CONFIG)
    inbox = project / "data" / "inbox" / "flights"
    inbox.mkdir(parents=True)
    (inbox / "1.csv").write_text("flight_id,carrier\n1,AA\n2,UA\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "WAREHOUSE_", "DBT_"))
    }
    env |= {"DBT_PROFILES_DIR": "profiles", "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    for command in (["ingestion"], ["ingestion", "scaffold", "flights"]):
        done = subprocess.run(
            [sys.executable, "-m", *command], cwd=project, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    (project / "models" / "marts" / "fct_flights.sql").write_text(MART_SQL)
    (project / "models" / "marts" / "_marts.yml").write_text(MART_YML)

    def dagster(*command: str) -> str:
        """The dagster CLI on the location, from the project's folder as `dg dev` loads it."""
        done = subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), *command]
            + ["-m", "orchestration.definitions"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    dagster("definitions", "validate")

    def load() -> set[AssetKey]:
        cwd = Path.cwd()
        os.chdir(project)
        try:
            with mock.patch.dict(os.environ, env, clear=True):
                return set(build_definitions(project).resolve_all_asset_keys())
        finally:
            os.chdir(cwd)

    manifest = project / "target" / "dagster" / "manifest.json"
    parsed = manifest.stat().st_mtime_ns
    assert load() == {
        AssetKey(["flights", "flights"]),
        REJECTED_ROWS,
        AssetKey(["staging", "stg_flights__flights"]),
        AssetKey(["marts", "fct_flights"]),
        PUBLISHED,
    }
    assert manifest.stat().st_mtime_ns == parsed  # prepared once: nothing changed since

    # A new model: the next load (a new process, as a reload is) parses again and shows it.
    (project / "models" / "marts" / "fct_carriers.sql").write_text(CARRIERS_SQL)
    assert "marts/fct_carriers" in dagster("asset", "list").split()
    assert manifest.stat().st_mtime_ns != parsed

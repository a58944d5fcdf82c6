"""Session fixtures for the dbt model tests (helpers live in model_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import AS_OF_FAR, DbtRunner, create_raw, load_batch, make_dbt_runner


@pytest.fixture(scope="session")
def dbt_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt")


@pytest.fixture(scope="session")
def dbt_run(dbt_workdir: Path) -> DbtRunner:
    return make_dbt_runner(dbt_workdir)


@pytest.fixture(scope="session")
def full_build(dbt_workdir: Path, dbt_run: DbtRunner) -> Path:
    """Both loads in raw, then one `dbt build --full-refresh`."""
    warehouse = dbt_workdir / "full.duckdb"
    create_raw(warehouse)
    load_batch(warehouse, 1)
    load_batch(warehouse, 2)
    # the re-sent evt-004 is 1 of 18 raw events: over the 1% duplicate gate meant for real volumes
    gates = {"duplicate_rate_error": 0.1}
    dbt_run(["build", "--full-refresh"], warehouse, {"features_as_of": AS_OF_FAR, **gates})
    return warehouse


@pytest.fixture(scope="session")
def incremental_build(dbt_workdir: Path, dbt_run: DbtRunner) -> tuple[Path, list[dict[str, Any]]]:
    """Load 1 + build, then load 2 in two parts with a build after each (incremental).

    The second part has load 2's loaded_at, as the rest of a load that was still
    arriving at the previous build. Returns the run results of the three builds.
    """
    warehouse = dbt_workdir / "incremental.duckdb"
    create_raw(warehouse)
    # models and seeds only: the data tests already run in full_build
    build = ["build", "--resource-type", "model", "--resource-type", "seed"]
    results = []
    for batch, part in ((1, slice(None)), (2, slice(0, 3)), (2, slice(3, None))):
        load_batch(warehouse, batch, part)
        dbt_run(build, warehouse, {"features_as_of": AS_OF_FAR})
        results.append(json.loads((dbt_workdir / "target" / "run_results.json").read_text()))
    return warehouse, results

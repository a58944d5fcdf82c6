"""Session fixtures for the dbt model tests (helpers live in model_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import AS_OF_FAR, DbtRunner, create_raw, load_batch, make_dbt_runner
from project_env import built_once


@pytest.fixture(scope="session")
def dbt_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dbt")


@pytest.fixture(scope="session")
def dbt_run(dbt_workdir: Path) -> DbtRunner:
    return make_dbt_runner(dbt_workdir)


@pytest.fixture(scope="session")
def full_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both loads in raw, then one `dbt build --full-refresh` (do not modify)."""

    def build(root: Path) -> None:
        warehouse = root / "full.duckdb"
        create_raw(warehouse)
        load_batch(warehouse, 1)
        load_batch(warehouse, 2)
        # the re-sent evt-004 is 1 of 18 raw events: over the 1% duplicate gate meant for
        # real volumes
        gates = {"duplicate_rate_error": 0.1}
        dbt_run = make_dbt_runner(root)
        dbt_run(["build", "--full-refresh"], warehouse, {"features_as_of": AS_OF_FAR, **gates})

    return built_once(tmp_path_factory, "models-full", build) / "full.duckdb"


@pytest.fixture(scope="session")
def incremental_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[dict[str, Any]]]:
    """Load 1 + build, then load 2 in two parts with a build after each (incremental).

    The second part has load 2's loaded_at, as the rest of a load that was still
    arriving at the previous build. Returns the run results of the three builds.
    """
    parts = ((1, slice(None)), (2, slice(0, 3)), (2, slice(3, None)))

    def build(root: Path) -> None:
        warehouse = root / "incremental.duckdb"
        create_raw(warehouse)
        dbt_run = make_dbt_runner(root)
        # models and seeds only: the data tests already run in full_build
        args = ["build", "--resource-type", "model", "--resource-type", "seed"]
        for number, (batch, part) in enumerate(parts):
            load_batch(warehouse, batch, part)
            dbt_run(args, warehouse, {"features_as_of": AS_OF_FAR})
            (root / "target" / "run_results.json").rename(root / f"run_results-{number}.json")

    root = built_once(tmp_path_factory, "models-incremental", build)
    results = [json.loads((root / f"run_results-{n}.json").read_text()) for n in range(len(parts))]
    return root / "incremental.duckdb", results

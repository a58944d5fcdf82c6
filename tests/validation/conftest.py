"""Session fixtures for the validation tests (helpers live in quality_fixtures.py)."""

from __future__ import annotations

from typing import Any

import pytest
from quality_fixtures import QUALITY_NOW, FixtureProject, make_project


@pytest.fixture(scope="session")
def fixture_project(tmp_path_factory: pytest.TempPathFactory) -> FixtureProject:
    return make_project(tmp_path_factory.mktemp("quality_fixtures"))


@pytest.fixture(scope="session")
def fixture_build(fixture_project: FixtureProject) -> dict[str, Any]:
    """One `dbt build` of every fixture with the fixed clock; its run_results.json."""
    return fixture_project.dbt(
        "build", "--exclude", "clock_*", dbt_vars={"quality_now": QUALITY_NOW}
    )

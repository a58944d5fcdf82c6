"""Session fixtures: one sample, published once by `python -m pipeline run` and once by a
Dagster run of every asset (in-process), each into its own warehouse folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster_sites import Site
from project_env import SAMPLE_TOKEN, SITE_FILES, copy_state

from demo.api import serve
from demo.generator import generate


@pytest.fixture(scope="session")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inbox = tmp_path_factory.mktemp("dagster") / "inbox"
    generate(inbox, users=300, seed=7, segment_size=1000)
    return inbox


@pytest.fixture(scope="session")
def orders_api(inbox: Path) -> Iterator[str]:
    """The demo orders API over the sample (the rest_api source reads it)."""
    with serve(inbox, token=SAMPLE_TOKEN) as url:
        yield url


@pytest.fixture(scope="session")
def pipeline_site(inbox: Path, orders_api: str, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The sample after `python -m pipeline run` (do not modify)."""
    site = Site(tmp_path_factory.mktemp("pipeline"), inbox)
    done = site.pipeline_run(orders_api)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return site


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DAGSTER_HOME of the run in `dagster_site`: a webserver over it shows that run."""
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.fixture(scope="session")
def dagster_site(
    inbox: Path, orders_api: str, dagster_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Site, Any]:
    """The sample after a Dagster run of every asset, and that run's result (do not modify)."""
    site = Site(tmp_path_factory.mktemp("dagster-run"), inbox)
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        return site, site.materialize(orders_api, instance=instance)


@pytest.fixture
def site(dagster_site: tuple[Site, Any], tmp_path: Path) -> Site:
    """A copy of the Dagster-published site to change."""
    copy_state(dagster_site[0].root, tmp_path / "site", SITE_FILES)
    return Site(tmp_path / "site", dagster_site[0].inbox)

"""Pipeline fixtures: `published` (the sample after one clean pipeline run), `site` (a clone)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_sites import Site, clone, site_env


@pytest.fixture(scope="session")
def published(published_sample: Path, sample_warehouse: Any) -> Site:
    """The ingested sample after one clean `python -m pipeline run` (do not modify)."""
    return Site(published_sample, sample_warehouse.inbox, site_env(published_sample))


@pytest.fixture
def site(published: Site, tmp_path: Path) -> Site:
    return clone(published, tmp_path / "site")


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Background processes a test starts; killed if the test fails half-way."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=600)

"""Pipeline fixtures: `published` (the sample after one clean pipeline run), `site` (a clone)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_sites import Site, clone, site_env
from project_env import LOADED_FILES, built_once, copy_state


@pytest.fixture(scope="session")
def published(sample_warehouse: Any, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The ingested sample after one clean `python -m pipeline run` (do not modify)."""

    def site_at(root: Path) -> Site:
        return Site(root, sample_warehouse.inbox, site_env(root))

    def build(root: Path) -> None:
        copy_state(sample_warehouse.warehouse.parent, root, LOADED_FILES)
        done = site_at(root).run()
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    return site_at(built_once(tmp_path_factory, "published", build))


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

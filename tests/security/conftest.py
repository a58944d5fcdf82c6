"""Security fixtures: the session's sample after one gated run with a known masking key.

`secured` is that baseline (do not modify it); tests that change anything take
`secured_copy`, a copy of its warehouse folder in their own tmp_path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from project_env import LOADED_FILES, SITE_FILES, built_once, copy_state
from security_site import VARS, Secured, secured_env


@pytest.fixture(scope="session")
def secured(sample_warehouse: Any, tmp_path_factory: pytest.TempPathFactory) -> Secured:
    """The ingested sample after one clean `python -m pipeline run` (do not modify)."""

    def site_at(root: Path) -> Secured:
        return Secured(root, sample_warehouse.inbox, secured_env(root))

    def build(root: Path) -> None:
        copy_state(sample_warehouse.warehouse.parent, root, LOADED_FILES)
        site = site_at(root)
        done = site.run(
            "-m", "pipeline", "run", "--inbox", str(site.inbox), "--vars", VARS, api=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    return site_at(built_once(tmp_path_factory, "secured", build))


@pytest.fixture
def secured_copy(secured: Secured, tmp_path: Path) -> Secured:
    dest = tmp_path / "site"
    copy_state(secured.root, dest, SITE_FILES)
    return replace(secured, root=dest, env=secured_env(dest))

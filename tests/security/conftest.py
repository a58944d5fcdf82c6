"""Security fixtures: the session's sample after one gated run with a known masking key.

`secured` is that baseline (do not modify it); tests that change anything take
`secured_copy`, a copy of its warehouse folder in their own tmp_path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from project_env import SITE_FILES, copy_state
from security_site import Secured, secured_env


@pytest.fixture(scope="session")
def secured(published_sample: Path, sample_warehouse: Any) -> Secured:
    """The ingested sample after one clean `python -m pipeline run` (do not modify)."""
    return Secured(published_sample, sample_warehouse.inbox, secured_env(published_sample))


@pytest.fixture
def secured_copy(secured: Secured, tmp_path: Path) -> Secured:
    dest = tmp_path / "site"
    copy_state(secured.root, dest, SITE_FILES)
    return replace(secured, root=dest, env=secured_env(dest))

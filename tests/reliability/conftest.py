"""Reliability fixtures (helpers in reliability_helpers.py)."""

from __future__ import annotations

import pytest
from reliability_helpers import BigSample, make_big_sample


@pytest.fixture(scope="session")
def big_sample(tmp_path_factory: pytest.TempPathFactory) -> BigSample:
    """About 35k user rows, 300k event lines and 4k orders: a load that takes seconds."""
    return make_big_sample(tmp_path_factory)

"""Serving fixtures (helpers in serving_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serving_helpers import Server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; stopped even when the test fails half-way."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()

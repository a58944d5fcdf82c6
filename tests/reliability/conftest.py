"""Reliability fixtures (helpers in reliability_helpers.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_helpers import BigSample, make_big_sample


@pytest.fixture(scope="session")
def big_sample(tmp_path_factory: pytest.TempPathFactory) -> BigSample:
    """About 35k user rows, 300k event lines and 4k orders: a load that takes seconds."""
    return make_big_sample(tmp_path_factory)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`tmpfs("3m")`: a real small disk (ENOSPC for real, no mock), unmounted after the
    test; skipped where mounting is not allowed. `mount -o remount,size=...` grows it."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"tmpfs-{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)

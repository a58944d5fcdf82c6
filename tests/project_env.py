"""What every test folder's commands share: the project root, the environment that
points a command at one warehouse folder, and copying such a folder.

Helpers live here, not in conftest.py, so test modules import them by a name no
other module uses (pytest puts tests/ on sys.path for tests/conftest.py).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TOKEN = "sample-token-5b2f"  # the demo orders API's token for the session's sample
PII_HASH_KEY = "tests-pii-hash-key"  # publish masks PII with it (privacy/masking.py)
# A fixed as-of keeps user_features identical between runs (else it is the run's start).
VARS = '{features_as_of: "2026-02-02T00:00:00Z"}'
# What copy_state copies: a loaded warehouse (the file and dlt's state), and a whole
# site (plus dbt's target, for partial parsing, and the published file).
LOADED_FILES = ("warehouse.duckdb", ".dlt-pipelines")
SITE_FILES = (*LOADED_FILES, "target", "analytics.duckdb")


# The sample sources' rejects gate lifted: these tests feed a few deliberately bad
# rows in small inputs (a third of a file, say); the gate has its own tests.
NO_REJECTS_GATE = {
    f"SOURCES__{name}__MAX_REJECTED_RATE": "1" for name in ("USERS", "ORDERS", "EVENTS", "PRODUCTS")
}


def warehouse_env(root: Path, token: str = SAMPLE_TOKEN, **extra: str) -> dict[str, str]:
    """os.environ with the warehouse, dbt's target and logs in `root`, the API token, and
    no rejects gate on the sample sources."""
    return {
        **os.environ,
        **NO_REJECTS_GATE,
        "WAREHOUSE_PATH": str(root / "warehouse.duckdb"),
        "DBT_PROFILES_DIR": str(ROOT / "profiles"),
        "DBT_TARGET_PATH": str(root / "target"),
        "DBT_LOG_PATH": str(root / "logs"),
        "SOURCES__ORDERS__API_TOKEN": token,
        **extra,
    }


def copy_state(source: Path, dest: Path, names: tuple[str, ...]) -> None:
    """Copy these files and folders of a warehouse folder, keeping mtimes (copy2), as a
    backup restore would."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, copy_function=shutil.copy2)
        elif path.exists():
            shutil.copy2(path, dest / name)


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder `name`, made by `build(folder)` once per test run and shared by every
    pytest-xdist worker: the first worker to ask builds it under a file lock, the others
    wait for it. Tests only read such a folder (or copy it): every worker sees it."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above each worker's own
    folder, built = base / name, base / f"{name}.built"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or its holder dies)
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            built.touch()
    return folder


def loads_with_new_states(pipeline: Any, count: int) -> list[str]:
    """`count` loads of one row each through a dlt pipeline, each storing a new state (the
    resource's position), as every load of a file or stream source does: their load ids,
    oldest first."""
    import dlt

    @dlt.resource(name="probe", write_disposition="append")
    def probe(number: int) -> Iterator[dict[str, int]]:
        dlt.current.resource_state()["position"] = number
        yield {"n": number}

    for number in range(count):
        pipeline.run(probe(number))
    return sorted(pipeline.list_completed_load_packages(), key=float)

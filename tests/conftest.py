"""Session fixtures shared by every test area: the sample data, loaded and built once.

`sample_inbox` writes the generator's sample (with its exact manifest);
`sample_warehouse` runs `python -m ingestion` on it against the demo orders API,
as a user would; `built_warehouse` adds `dbt build`. Each step is a real
subprocess on real files, so later tests read a warehouse made the product's way.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from leftovers import become_subreaper, stop_leftovers
from project_env import (
    LOADED_FILES,
    PII_HASH_KEY,
    ROOT,
    SAMPLE_TOKEN,
    VARS,
    built_once,
    copy_state,
    warehouse_env,
)

from demo.api import serve
from demo.generator import generate
from warehouse import dbt_package

# The sample's dbt project finds the tool's package through its link, as any project
# does after `python -m pipeline deps`: tests run dbt in it directly.
dbt_package.link(ROOT)

# tests/orchestration needs the dagster extra (`make test-dagster` installs .venv-dagster).
collect_ignore = [] if importlib.util.find_spec("dagster") else ["orchestration"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first (in their order): handed out one by one to the
    workers (`--dist load`), they end the run on short tests, not on one long test
    while the other worker sits idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def no_process_left() -> Iterator[None]:
    """After the last test (of this worker) no process it started is running; set up first,
    so torn down after every other session fixture has stopped its servers."""
    become_subreaper()
    yield
    left = stop_leftovers()
    assert not left, "processes the tests left running (now killed):\n" + "\n".join(
        f"  {pid}: {command}" for pid, command in left.items()
    )


SAMPLE_USERS = 300
SAMPLE_SEED = 7
SAMPLE_SEGMENT_SIZE = 1000


@dataclass(frozen=True)
class Sample:
    """A generated inbox, the warehouse it is loaded into, and the env that points at both."""

    inbox: Path
    warehouse: Path
    manifest: dict[str, Any]
    env: dict[str, str]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a project command (python -m ..., dbt ...) from the project root."""
        if command[0] == "dbt":
            command = (str(Path(sys.executable).with_name("dbt")), *command[1:])
        elif command[0] == "python":
            command = (sys.executable, *command[1:])
        result = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def ingest(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`python -m ingestion` on this inbox, with the demo orders API running."""
        with serve(self.inbox, token=SAMPLE_TOKEN) as url:
            return self.run(
                "python",
                "-m",
                "ingestion",
                "--inbox",
                str(self.inbox),
                "--api-url",
                url,
                *args,
                check=check,
            )


def make_sample(root: Path) -> Sample:
    generate(root / "inbox", users=SAMPLE_USERS, seed=SAMPLE_SEED, segment_size=SAMPLE_SEGMENT_SIZE)
    return make_sample_at(root)


def make_sample_at(root: Path) -> Sample:
    """The sample generated in `root` (its manifest as the generator wrote it)."""
    inbox = root / "inbox"
    manifest = json.loads((inbox / "manifest.json").read_text())
    return Sample(inbox, root / "warehouse.duckdb", manifest, warehouse_env(root))


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """The sample, ingested once per test run into a fresh warehouse (do not modify it)."""
    folder = built_once(tmp_path_factory, "sample", lambda root: make_sample(root).ingest())
    return make_sample_at(folder)


@pytest.fixture(scope="session")
def built_warehouse(sample_warehouse: Sample, tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """A copy of the ingested sample after `dbt build` (do not modify it)."""

    def build(root: Path) -> None:
        copy_state(sample_warehouse.warehouse.parent, root, LOADED_FILES)
        built(root).run("dbt", "build")

    def built(root: Path) -> Sample:
        return replace(
            sample_warehouse, warehouse=root / "warehouse.duckdb", env=warehouse_env(root)
        )

    return built(built_once(tmp_path_factory, "built", build))


@pytest.fixture(scope="session")
def published_sample(sample_warehouse: Sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the ingested sample after one clean `python -m pipeline run`, with the
    tests' masking key and as-of (do not modify): the pipeline and security tests' baseline."""

    def build(root: Path) -> None:
        copy_state(sample_warehouse.warehouse.parent, root, LOADED_FILES)
        env = warehouse_env(root, PII_HASH_KEY=PII_HASH_KEY)
        for name in ("ANALYTICS_PATH", "ANALYTICS_ENCRYPTION_KEY", "ANALYTICS_FILE_MODE"):
            env.pop(name, None)
        inbox = str(sample_warehouse.inbox)
        with serve(sample_warehouse.inbox, token=SAMPLE_TOKEN) as url:
            replace(sample_warehouse, env=env).run(
                *("python", "-m", "pipeline", "run", "--inbox", inbox, "--api-url", url),
                *("--vars", VARS),
            )

    return built_once(tmp_path_factory, "published", build)


@pytest.fixture
def fresh_sample(tmp_path: Path) -> Sample:
    """A sample of one's own, not yet ingested, for tests that change inputs or state."""
    return make_sample(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis://127.0.0.1:<free port>/0 of a redis-server started for this session."""
    import redis  # the engines' environments (make test-postgres, ...) have no redis extra

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (Debian: apt-get install redis-server; .ci/run does it)"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.02)
    client.close()
    yield url
    process.terminate()
    process.wait(timeout=600)

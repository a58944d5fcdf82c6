"""The product apart from its demo: the built wheel holds the product packages only,
and no product module imports the demo (import-linter's contracts say the same in
`make lint`; this checks the artefact a user installs)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from project_env import ROOT, warehouse_env
from wheels import build_wheel

PRODUCT = {
    "warehouse",
    "privacy",
    "ingestion",
    "monitoring",
    "serving",
    "pipeline",
    "orchestration",
}
# What the demo's modules define: the sample generator, the demo orders API, the producer.
DEMO_DEFINITIONS = ("def generate(", "class OrdersServer", "def produce(")


def test_wheel_holds_the_product_and_no_demo(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == PRODUCT
    assert [n for n in names if n.startswith("demo/")] == []
    with zipfile.ZipFile(wheel) as archive:
        demo_code = [
            (name, definition)
            for name in names
            if name.endswith(".py")
            for definition in DEMO_DEFINITIONS
            if definition in archive.read(name).decode("utf-8")
        ]
    assert demo_code == []
    assert "pipeline/cli.py" in names and "warehouse/lock.py" in names
    # the tool's dbt package and init's template travel with it
    assert "warehouse/dbt/dbt_project.yml" in names
    assert "warehouse/dbt/macros/generic_tests/rows_accounted_for.sql" in names
    assert "pipeline/project_template/dot-dlt/config.toml" in names


def _without(module: str, where: Path) -> str:
    """A folder that, first on PYTHONPATH, makes `import <module>` fail as if not installed
    (the one fault here we cannot cause for real without uninstalling the extra)."""
    package = where / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'raise ModuleNotFoundError("No module named {module}", name="{module}")\n'
    )
    return str(where)


def _run_without(
    module: str, tmp_path: Path, *command: str, **env: str
) -> subprocess.CompletedProcess:
    """`python <command>` with `module` missing, pointed at a warehouse in tmp_path."""
    shadow = _without(module, tmp_path / "shadow")
    return subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=warehouse_env(tmp_path, PYTHONPATH=shadow, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_serve_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    done = _run_without("fastapi", tmp_path, "-m", "pipeline", "serve", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: serve needs the serving extra (fastapi is missing): "
        'pip install "ml-warehouse[serving]"'
    )


def test_redis_events_without_its_extra_say_how_to_install_it(tmp_path: Path) -> None:
    done = _run_without(
        "redis", tmp_path, "-m", "ingestion", "events", SOURCES__EVENTS__BACKEND="redis"
    )
    assert done.returncode == 1
    assert 'needs the redis extra: pip install "ml-warehouse[redis]"' in done.stderr
    assert "Traceback" not in done.stderr

"""The product apart from its demo: the built wheel holds the product packages only,
and no product module imports the demo (import-linter's contracts say the same in
`make lint`; this checks the artefact a user installs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from project_env import ROOT

PRODUCT = {"warehouse", "privacy", "ingestion", "monitoring", "serving", "pipeline"}
# What the demo's modules define: the sample generator, the demo orders API, the producer.
DEMO_DEFINITIONS = ("def generate(", "class OrdersServer", "def produce(")
NOT_SOURCES = {".git", "data", "target", "site", "build", "logs", "benchmarks", "tests"}


def test_wheel_holds_the_product_and_no_demo(tmp_path: Path) -> None:
    # Built from a copy: building in place would leave build/ and egg-info in the project.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda folder, names: [
            n for n in names if n in NOT_SOURCES or n.startswith(".venv") or n.endswith(".egg-info")
        ],
    )
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["--quiet", "-w", str(out)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
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

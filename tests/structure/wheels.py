"""Building the tool's wheel from a copy of the repository, as a release would."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from project_env import ROOT

NOT_SOURCES = {".git", "data", "target", "site", "build", "logs", "benchmarks", "tests"}


def build_wheel(
    work: Path, version: str | None = None, appended: dict[str, str] | None = None
) -> Path:
    """The wheel of the repository's sources, with `version` in place of pyproject's and
    `appended` text at the end of those files when given. Built from a copy: building in
    place would leave build/ and egg-info behind."""
    source = work / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda folder, names: [
            n
            for n in names
            if n in NOT_SOURCES
            or n.startswith((".venv", ".ml-warehouse", "dbt_packages"))
            or n.endswith(".egg-info")
        ],
    )
    if version:
        pyproject = source / "pyproject.toml"
        text = re.sub(
            r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1
        )
        pyproject.write_text(text)
    for name, text in (appended or {}).items():
        path = source / name
        path.write_text(path.read_text() + text)
    out = work / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["--quiet", "-w", str(out)],
        check=True,
        timeout=1800,
    )
    (wheel,) = out.glob("*.whl")
    return wheel

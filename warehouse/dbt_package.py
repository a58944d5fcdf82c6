"""The tool's dbt package (warehouse/dbt/, dbt name `ml_warehouse`) and how a project finds it.

The package is installed with the tool (pip) and reaches a dbt project the way any
local dbt package does: the project's packages.yml lists `- local: .ml-warehouse`
and `dbt deps` links it into dbt_packages/. `.ml-warehouse` is a symlink to the
package inside the installed tool, kept out of git: a new clone, a new virtualenv
or a `pip install -U` elsewhere re-points it (`link`), so the project never holds a
copy to keep in sync and an upgrade of the tool is an upgrade of its macros.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

NAME = "ml_warehouse"
LINK = ".ml-warehouse"
PACKAGES_DIR = "dbt_packages"


def package_dir() -> Path:
    """The package inside the installed tool (this file's folder, whichever install it is)."""
    return Path(__file__).resolve().parent / "dbt"


def _point(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target` unless it already leads there (directly, or through
    `.ml-warehouse` as `dbt deps` links it). Atomic (a new link renamed over the old), so
    two commands starting together never see it missing."""
    if link.is_symlink() and link.resolve() == target:
        return
    if link.is_dir() and not link.is_symlink():  # a copy `dbt deps` made where links fail
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    temp.symlink_to(target, target_is_directory=True)
    os.replace(temp, link)


def uses_package(project_dir: Path) -> bool:
    """Whether the project's packages.yml lists the tool's package (`- local: .ml-warehouse`)."""
    packages = project_dir / "packages.yml"
    return packages.is_file() and LINK in packages.read_text(encoding="utf-8")


def link(project_dir: Path) -> None:
    """Point the project's `.ml-warehouse` and `dbt_packages/ml_warehouse` at the installed
    package, as `dbt deps` would for the local package. A project whose packages.yml does
    not list the package is left alone."""
    if uses_package(project_dir):
        _point(project_dir / LINK, package_dir())
        _point(project_dir / PACKAGES_DIR / NAME, package_dir())

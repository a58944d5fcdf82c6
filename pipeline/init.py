"""`python -m pipeline init PATH`: a new project of the user's own, holding none of the tool's code.

It writes the files of pipeline/project_template/ (dbt_project.yml, packages.yml,
profiles/, .dlt/config.toml with a commented example of each kind, .gitignore, a
README) with the project's name filled in, the empty model layers, and links the
tool's dbt package. It never writes into a folder that holds anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from warehouse import dbt_package

TEMPLATE = Path(__file__).resolve().parent / "project_template"
PLACEHOLDER = "__PROJECT__"
# What the template stores under a visible name: packaging drops dot-files more easily.
DOT = "dot-"
LAYERS = ("staging", "intermediate", "marts", "quarantine")


class InitError(Exception):
    """The project cannot be written: one line that says why."""


def project_name(folder: Path, name: str | None = None) -> str:
    """The dbt project (and profile) name: `name`, else the folder's name in snake_case."""
    chosen = name or re.sub(r"[^0-9a-z]+", "_", folder.resolve().name.lower()).strip("_")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", chosen or ""):
        raise InitError(
            f"{chosen!r} is not a dbt project name (letters, digits and _, not starting with "
            "a digit): pass --name"
        )
    if chosen == dbt_package.NAME:
        raise InitError(f"{chosen!r} is the tool's own dbt package: pass another --name")
    return chosen


def init(folder: Path, name: str | None = None) -> list[Path]:
    """Write the project into `folder` (new or empty); the files written, in order."""
    if folder.exists() and not folder.is_dir():
        raise InitError(f"{folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise InitError(f"{folder} is not empty: init writes a new project into an empty folder")
    project = project_name(folder, name)
    written = []
    for source in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        relative = Path(*(part.replace(DOT, ".", 1) for part in source.relative_to(TEMPLATE).parts))
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            source.read_text(encoding="utf-8").replace(PLACEHOLDER, project), encoding="utf-8"
        )
        written.append(target)
    for layer in LAYERS:  # empty folders git keeps
        keep = folder / "models" / layer / ".gitkeep"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.touch()
        written.append(keep)
    (folder / "macros").mkdir()
    dbt_package.link(folder)
    return written

"""`python -m pipeline init PATH` and `deps`: a project of one's own, as the commands print it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from warehouse import dbt_package

FILES = [
    ".dlt/config.toml",
    ".gitignore",
    "README.md",
    "dbt_project.yml",
    "models/intermediate/.gitkeep",
    "models/marts/.gitkeep",
    "models/quarantine/.gitkeep",
    "models/staging/.gitkeep",
    "packages.yml",
    "profiles/profiles.yml",
]


def pipeline(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "WAREHOUSE_"))}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_init_writes_a_project_of_its_own_and_never_into_a_folder_with_files(
    tmp_path: Path,
) -> None:
    done = pipeline(tmp_path, "pipeline", "init", "My Flights")
    assert done.returncode == 0, done.stderr
    project = tmp_path / "My Flights"
    files = sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file()
        and not {dbt_package.LINK, "dbt_packages"} & set(p.relative_to(project).parts)
    )
    assert files == FILES
    dbt_project = (project / "dbt_project.yml").read_text()
    assert "name: my_flights\n" in dbt_project and "profile: my_flights\n" in dbt_project
    assert "search_order: [my_flights, ml_warehouse, dbt]" in dbt_project
    assert (project / "profiles" / "profiles.yml").read_text().count("my_flights:") == 1
    ignored = (project / ".gitignore").read_text().splitlines()
    assert {"data/", "target/", "dbt_packages/", ".ml-warehouse", ".dlt/secrets.toml"} <= set(
        ignored
    )
    # the tool's dbt package is a link into the installed tool, not a copy
    assert (project / ".ml-warehouse").resolve() == dbt_package.package_dir()
    assert (project / "dbt_packages" / "ml_warehouse").resolve() == dbt_package.package_dir()

    again = pipeline(tmp_path, "pipeline", "init", "My Flights")
    assert (again.returncode, again.stderr) == (
        2,
        "error: My Flights is not empty: init writes a new project into an empty folder\n",
    )
    (tmp_path / "notes").write_text("mine")
    on_a_file = pipeline(tmp_path, "pipeline", "init", "notes")
    assert (on_a_file.returncode, on_a_file.stderr) == (2, "error: notes is a file, not a folder\n")
    named = pipeline(tmp_path, "pipeline", "init", "x", "--name", "ml_warehouse")
    assert named.returncode == 2 and "is the tool's own dbt package" in named.stderr
    assert not (tmp_path / "x").exists()


def test_a_new_project_runs_nothing_and_says_how_to_declare_a_source(tmp_path: Path) -> None:
    assert pipeline(tmp_path, "pipeline", "init", "p").returncode == 0
    run = pipeline(tmp_path / "p", "pipeline", "run")
    assert (run.returncode, run.stderr) == (
        2,
        "error: no source is declared yet: add a [sources.<name>] table with a kind to "
        ".dlt/config.toml (it has a commented example of each kind)\n",
    )
    assert not (tmp_path / "p" / "data").exists()


def test_each_commented_example_is_a_valid_declaration_of_its_kind(tmp_path: Path) -> None:
    assert pipeline(tmp_path, "pipeline", "init", "p").returncode == 0
    config = tmp_path / "p" / ".dlt" / "config.toml"
    template = config.read_text()
    examples = []
    for paragraph in template.split("\n\n"):
        lines = paragraph.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("# [sources.")]
        if starts:
            examples.append("\n".join(line[2:] for line in lines[starts[0] :]))
    kinds = {}
    for example in examples:
        config.write_text(f"{template}\n{example}\n")
        described = pipeline(tmp_path / "p", "ingestion", "describe")
        assert described.returncode == 0, example + described.stderr
        kinds.update({name: s["kind"] for name, s in json.loads(described.stdout).items()})
    assert kinds == {
        "flights": "csv",
        "readings": "jsonl",
        "items": "rest_api",
        "fleet": "sql_table",
    }


def test_deps_points_a_stale_link_at_the_installed_tool(tmp_path: Path) -> None:
    """A clone of the project in a new virtualenv: the link leads to the old install."""
    assert pipeline(tmp_path, "pipeline", "init", "p").returncode == 0
    project = tmp_path / "p"
    (project / ".ml-warehouse").unlink()
    (project / ".ml-warehouse").symlink_to(tmp_path / "old-venv" / "dbt")
    (project / "dbt_packages" / "ml_warehouse").unlink()

    done = pipeline(project, "pipeline", "deps")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"ml_warehouse: {dbt_package.package_dir()}\n"
    assert (project / ".ml-warehouse").resolve() == dbt_package.package_dir()
    assert (project / "dbt_packages" / "ml_warehouse").resolve() == dbt_package.package_dir()

    # dbt's own round trip: `dbt clean` removes dbt_packages/, `dbt deps` installs the
    # package again through the link, as any local package
    env = {**os.environ, "DBT_PROFILES_DIR": "profiles"}
    dbt = str(Path(sys.executable).with_name("dbt"))
    for command in (["clean"], ["deps"], ["parse"]):
        done = subprocess.run([dbt, *command], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:]
    assert (project / "dbt_packages" / "ml_warehouse").resolve() == dbt_package.package_dir()

    elsewhere = pipeline(tmp_path, "pipeline", "deps")
    assert elsewhere.returncode == 2
    assert elsewhere.stderr == (
        "error: packages.yml does not list the tool's dbt package: "
        "add `- local: .ml-warehouse` under packages:\n"
    )

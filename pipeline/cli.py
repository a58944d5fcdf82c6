"""`python -m pipeline`: run the steps in order, each as the command a user would type.

Steps run as subprocesses: dbt's in-process runner can keep the DuckDB file
locked until the process ends (dbt-core #11980), and each step must find the
warehouse free.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ingestion.sample.api import serve
from ingestion.sample.generator import generate
from ingestion.warehouse import warehouse_path

DEMO_TOKEN = "demo-token"


def run_step(name: str, command: list[str], env: dict[str, str]) -> None:
    """Run one step; stop the whole run with its exit code when it fails."""
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        print(f"error: step {name!r} failed with exit code {result.returncode}", file=sys.stderr)
        raise SystemExit(result.returncode)


def demo(inbox: Path, users: int, seed: int) -> int:
    """Sample data → ingest (with the demo orders API) → dbt build → monitor."""
    if not (inbox / "manifest.json").exists():
        print(f"writing sample data to {inbox} (users={users}, seed={seed})")
        generate(inbox, users=users, seed=seed)
    env = {**os.environ, "SOURCES__ORDERS__API_TOKEN": DEMO_TOKEN}
    env.setdefault("DBT_PROFILES_DIR", "profiles")
    python = sys.executable
    with serve(inbox, token=DEMO_TOKEN) as api_url:
        run_step(
            "ingest",
            [python, "-m", "ingestion", "--inbox", str(inbox), "--api-url", api_url],
            env,
        )
    dbt = str(Path(python).with_name("dbt"))
    run_step("build", [dbt, "build"], env)
    run_step("monitor", [python, "-m", "monitoring"], env)
    path = warehouse_path()
    print(
        f"\nwarehouse: {path}\n"
        "query it read-only, e.g.:\n"
        f"  python -c \"import duckdb; duckdb.connect('{path}', read_only=True)"
        ".sql('select * from marts.dim_users limit 5').show()\""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser(
        "demo", help="the whole pipeline on sample data (what `make run` does)"
    )
    demo_cmd.add_argument("--inbox", default="data/inbox", type=Path)
    demo_cmd.add_argument("--users", default=1000, type=int)
    demo_cmd.add_argument("--seed", default=42, type=int)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.inbox, args.users, args.seed)
    return 2

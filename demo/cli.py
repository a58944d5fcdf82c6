"""`python -m demo` (what `make run` does): sample data, the demo orders API, one gated run.

The run is `python -m pipeline run` as a child process, exactly what a user
types; this module only supplies its inputs (the sample inbox and the API's
URL and token) and says what the published file holds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from warehouse.settings import analytics_path, warehouse_path

from .api import serve
from .generator import generate

DEMO_TOKEN = "demo-token"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Sample data + demo orders API + one gated pipeline run with publish.",
    )
    parser.add_argument("--inbox", default=Path("data/inbox"), type=Path)
    parser.add_argument("--users", default=1000, type=int)
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--verbose", action="store_true", help="show dbt's line for every node")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)

    inbox: Path = args.inbox
    if not (inbox / "manifest.json").exists():
        print(f"writing sample data to {inbox} (users={args.users}, seed={args.seed})", flush=True)
        generate(inbox, users=args.users, seed=args.seed)
    env = {**os.environ, "SOURCES__ORDERS__API_TOKEN": DEMO_TOKEN}
    with serve(inbox, token=DEMO_TOKEN) as api_url:
        command = [sys.executable, "-m", "pipeline", "run", "--inbox", str(inbox)]
        command += ["--api-url", api_url]
        command += ["--verbose"] * args.verbose + ["--debug"] * args.debug
        try:
            code = subprocess.run(command, env=env).returncode
        except KeyboardInterrupt:
            return 130
    if code == 0:
        published = analytics_path(warehouse_path())
        print(
            "\nIn the published copy names are null and emails hashed: the dbt YAML tags those\n"
            "columns as PII (meta: pii) and publish masks them (docs/security.md); the working\n"
            f"warehouse {warehouse_path()} keeps the originals. Query the published copy:\n"
            f"  python -c \"import duckdb; duckdb.connect('{published}', read_only=True)"
            ".sql('select * from marts.dim_users limit 5').show()\""
        )
    return code

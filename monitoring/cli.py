"""`python -m monitoring`: measure the warehouse after a run.

For now it reports the row count of every mart; quality metrics, history and
alerts build on this.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from ingestion.warehouse import warehouse_path

EXIT_OK, EXIT_USAGE = 0, 2


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes, safe for any name (quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def mart_row_counts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Rows per table in the `marts` schema, in name order."""
    tables = con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'marts' order by table_name"
    ).fetchall()
    return [
        (name, con.execute(f'select count(*) from marts.{quote(name)}').fetchone()[0])
        for (name,) in tables
    ]


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m monitoring", description="Report on the warehouse after a run."
    ).parse_args(argv)
    path = warehouse_path()
    if not path.exists():
        print(
            f"error: no warehouse at {path}: run `make run` or `python -m ingestion` and "
            "`dbt build` first",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with duckdb.connect(str(path), read_only=True) as con:
        counts = mart_row_counts(con)
    if not counts:
        print(f"error: no marts in {path}: run `dbt build` first", file=sys.stderr)
        return EXIT_USAGE
    print("| mart | rows |\n|---|---|")
    for name, rows in counts:
        print(f"| marts.{name} | {rows} |")
    return EXIT_OK

"""The same transforms as benchmarks/pandas_reference.py, as one DuckDB process: the floor.

`python -m benchmarks.duckdb_reference --inbox DIR --out DIR` reads the users CSV
exports and the events JSONL segments with DuckDB's own readers, applies the
pandas reference's rules (its module doc lists them) in SQL, and writes the same
three marts as Parquet. Its outputs equal the pandas reference's row for row
(tests/benchmarks). What the pipeline spends above it is what lineage, rejects,
quarantine, tests, dbt and dlt cost; a pipeline row's ratio to it says how far a
run is from what one engine needs to do the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from benchmarks import pandas_reference
from benchmarks.pandas_reference import (
    AGE_BINS,
    AGE_LABELS,
    AGE_MAX,
    AGE_MIN,
    EMAIL_PATTERN,
    IQR_FACTOR,
    TIMESTAMP_FORMAT,
    USER_COLUMNS,
)


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def dim_users(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Table dim_users: the latest valid version per user, validated, imputed, banded."""
    files = ", ".join(_quoted(p) for p in sorted(folder.glob("*.csv")))
    columns = ", ".join(f"'{c}': 'varchar'" for c in USER_COLUMNS)
    # text as sent ('' stays ''), short lines padded with null, long ones skipped (as pandas)
    con.execute(f"""
        create temp table raw_users as
        select * from read_csv([{files}], header = true, columns = {{{columns}}},
                               auto_detect = false, delim = ',', quote = '"', escape = '"',
                               nullstr = '\x01', null_padding = true, ignore_errors = true,
                               filename = true)""")
    # a table keeps the files' order (DuckDB preserves insertion order): rowid is the line's
    con.execute("""
        create temp table users_in_order as
        select *, rowid as source_row from raw_users where updated_at is not null""")
    keys = ", ".join(USER_COLUMNS)
    groups = " ".join(
        f"when age_imputed > {low} and age_imputed <= {high} then '{label}'"
        for low, high, label in zip(AGE_BINS, AGE_BINS[1:], AGE_LABELS, strict=False)
    )
    con.execute(f"""
        create temp table dim_users as
        with typed as (
            select *, try_cast(trim(user_id) as bigint) as id,
                   try_strptime(trim(updated_at), '{TIMESTAMP_FORMAT}') as updated,
                   row_number() over (partition by {keys} order by filename, source_row) as copy
            from users_in_order
        ),
        latest as (
            select * from typed where id is not null and updated is not null and copy = 1
            qualify row_number() over (
                partition by id order by updated desc, filename desc, source_row desc) = 1
        ),
        cleaned as (
            select *, nullif(lower(trim(email)), '') as email_text,
                   try_cast(trim(age) as double) as age_number
            from latest
        ),
        validated as (
            select *,
                   coalesce(regexp_full_match(email_text, '{EMAIL_PATTERN}'), false) as valid_email,
                   case when age_number between {AGE_MIN} and {AGE_MAX}
                        and age_number = round(age_number) then age_number end as valid_age
            from cleaned
        ),
        imputed as (
            select *, coalesce(valid_age, avg(valid_age) over ()) as age_imputed from validated
        )
        select id as user_id, trim(name) as name,
               case when valid_email then email_text end as email,
               case when valid_email then split_part(email_text, '@', 2) end as email_domain,
               valid_email as is_valid_email,
               nullif(upper(trim(country)), '') as country,
               valid_age::bigint as age, age_imputed, valid_age is null as is_age_imputed,
               case {groups} end as age_group,
               try_strptime(trim(signup_at), '{TIMESTAMP_FORMAT}') as signup_at,
               updated as updated_at
        from imputed""")


def fct_events(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Tables fct_events and category_stats: valid events, first of each id, with their
    row features and their category's statistics."""
    files = ", ".join(_quoted(p) for p in sorted(folder.glob("*.jsonl")))
    fields = "event_id, user_id, category, value, occurred_at"
    columns = ", ".join(f"'{f}': 'varchar'" for f in fields.split(", "))
    con.execute(f"""
        create temp table raw_events as
        select {fields}
        from read_json([{files}], format = 'newline_delimited', columns = {{{columns}}},
                       ignore_errors = true)""")
    con.execute(f"""
        create temp table events as
        select event_id, try_cast(user_id as bigint) as user_id, category,
               try_cast(value as double) as value,
               try_strptime(occurred_at, '{TIMESTAMP_FORMAT}') as occurred_at, rowid as line
        from raw_events
        where event_id is not null
        qualify row_number() over (partition by event_id order by line) = 1""")
    con.execute("delete from events where occurred_at is null")
    con.execute(f"""
        create temp table category_stats as
        with stats as (
            select category, avg(value) as value_mean, stddev_samp(value) as value_std,
                   count(*) as event_count,
                   quantile_cont(value, 0.25) as q1, quantile_cont(value, 0.75) as q3
            from events where category is not null group by category
        )
        select *, q1 - {IQR_FACTOR} * (q3 - q1) as value_lower_bound,
                  q3 + {IQR_FACTOR} * (q3 - q1) as value_upper_bound
        from stats order by category""")
    con.execute("""
        create temp table fct_events as
        select e.event_id, e.user_id, e.category, e.value, e.occurred_at,
               hour(e.occurred_at) as event_hour, isodow(e.occurred_at) - 1 as event_day_of_week,
               coalesce(e.value < s.value_lower_bound or e.value > s.value_upper_bound, false)
                   as is_value_outlier,
               s.value_mean as category_value_mean, s.value_std as category_value_std,
               s.event_count as category_event_count
        from events e left join category_stats s using (category)
        order by e.line""")


def run(inbox: Path, out: Path, users_only: bool = False) -> dict[str, int]:
    """All transforms (or only the users'); the marts written as Parquet under `out`.
    Returns their row counts."""
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    marts = ["dim_users"]
    dim_users(con, inbox / "users")
    if not users_only:
        fct_events(con, inbox / "events")
        marts += ["fct_events", "category_stats"]
    counts = {}
    for mart in marts:
        con.execute(f"copy {mart} to {_quoted(out / f'{mart}.parquet')} (format parquet)")
        counts[mart] = con.execute(f"select count(*) from {mart}").fetchone()[0]
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    return pandas_reference.main(argv, run, "duckdb")


if __name__ == "__main__":
    raise SystemExit(main())

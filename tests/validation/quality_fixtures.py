"""A throwaway dbt project that runs the project's generic quality tests on tiny tables.

The fixture tables are made with plain SQL in a temp DuckDB file and declared
as dbt sources (plus a few models on top of them); the tool's dbt
package is linked in as in any project, and the quality vars come from the
sample's dbt_project.yml. One `dbt build` covers every edge at once.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse import dbt_package

PROJECT_DIR = Path(__file__).resolve().parents[2]
DBT = PROJECT_DIR / ".venv" / "bin" / "dbt"
QUALITY_NOW = "2026-01-10T12:00:00Z"
QUALITY_KEYS = (
    "missing_rate_warn",
    "duplicate_rate_error",
    "outlier_rate_warn",
    "outlier_iqr_factor",
    "freshness_warn_hours",
    "freshness_error_hours",
    "email_pattern",
)

# Every table in schema `fx`: 100 rows unless said otherwise (i = 0..99).
FIXTURE_SQL = """
create schema fx;
-- missing_rate: 5 of 100 null, 6 of 100 null
create table fx.missing_5 as select case when i < 5 then null else i end as v from range(100) t(i);
create table fx.missing_6 as select case when i < 6 then null else i end as v from range(100) t(i);
-- whole model: 2 columns x 100 rows = 200 cells; 10 and 11 null cells
create table fx.cells_10 as
    select case when i < 6 then null else i end as a, case when i < 4 then null else i end as b
    from range(100) t(i);
create table fx.cells_11 as
    select case when i < 6 then null else i end as a, case when i < 5 then null else i end as b
    from range(100) t(i);
-- degenerate inputs
create table fx.empty as
    select cast(null as integer) as v, cast(null as timestamp) as loaded_at where false;
create table fx.all_null as select cast(null as double) as v from range(3) t(i);
create table fx.single_row as select 7 as v, 'a@example.com' as email;
create table fx.single_null as select cast(null as integer) as v;
create table fx.repeated as select 42.0 as v from range(50) t(i);
-- duplicate_rate: 100 rows / 99 distinct keys (1 %); 101 rows / 99 keys (2 / 101)
create table fx.dup_1 as select least(i, 98) as k, i % 2 as g from range(100) t(i);
create table fx.dup_2 as select least(i, 98) as k, i % 2 as g from range(101) t(i);
-- composite key (k, g): 100 rows, 98 distinct pairs; whole row: 100 rows, 99 distinct
create table fx.dup_pairs as
    select i // 2 as k, case when i < 4 then 0 else i % 2 end as g from range(100) t(i);
create table fx.dup_rows as select least(i, 98) as k, 'x' as label from range(100) t(i);
-- outlier_rate: 90 values 0..89 + 10 at 1000 (10 %); 89 values 0..88 + 11 at 1000 (11 %)
create table fx.outliers_10 as
    select case when i < 90 then i else 1000 end as v from range(100) t(i);
create table fx.outliers_11 as
    select case when i < 89 then i else 1000 end as v from range(100) t(i);
-- per group: a = 0..19, b = 1000..1017 + 2 at 1500: 2 of 40 (5 %) outside b's own
-- fences, none outside the fences of the whole column (IQR about 1000)
create table fx.outliers_grouped as
    select 'a' as grp, i as v from range(20) t(i)
    union all select 'b', case when i < 18 then 1000 + i else 1500 end from range(20) t(i);
-- accepted_range / matches_regex with mostly 0.9: 10 and 11 of 100 outside
create table fx.range_10 as select case when i < 10 then 200 else i end as v from range(100) t(i);
create table fx.range_11 as select case when i < 11 then 200 else i end as v from range(100) t(i);
create table fx.emails_10 as
    select case when i < 10 then 'bad' || i else 'u' || i || '@example.com' end as email,
        case when i = 99 then null else i end as v
    from range(100) t(i);
create table fx.emails_11 as
    select case when i < 11 then 'bad' || i else 'u' || i || '@example.com' end as email
    from range(100) t(i);
-- recency against quality_now = 2026-01-10 12:00:00 UTC
create table fx.fresh_23h59 as select timestamp '2026-01-09 12:01:00' as loaded_at;
create table fx.fresh_24h as select timestamp '2026-01-09 12:00:00' as loaded_at;
create table fx.stale_24h01 as select timestamp '2026-01-09 11:59:00' as loaded_at;
create table fx.stale_48h01 as select timestamp '2026-01-08 11:59:00' as loaded_at;
create table fx.fresh_tz as select timestamptz '2026-01-09 11:30:00-01:00' as loaded_at;
create table fx.fresh_text as select '2026-01-09T12:30:00Z' as loaded_at;
create table fx.null_times as select cast(null as timestamp) as loaded_at from range(2) t(i);
create table fx.meta_2h as select timestamp '2026-01-10 10:00:00' as loaded_at;
-- recency against the real clock (no quality_now)
create table fx.clock_now as select cast(now() as timestamptz) - interval 1 hour as loaded_at;
create table fx.clock_25h as select cast(now() as timestamptz) - interval 25 hour as loaded_at;
-- types
create table fx.typed as
    select 1::bigint as id, 'x'::varchar as name, 1.5::double as amount, true as flag,
        timestamp '2026-01-01 00:00:00' as loaded_at;
"""

SOURCES_YML = """
version: 2

sources:
  - name: fx
    schema: fx
    # for the monitor (tests/validation/test_generic_tests.py compares it with the tests)
    meta:
      monitor_timestamp_column: loaded_at
    tables:
      - name: missing_5
        # rows_accounted_for on 100 rows, 5 of them null: the parts add up, or not
        data_tests:
          - ml_warehouse.rows_accounted_for:
              name: accounted_parts_add_up_passes
              arguments:
                mart: source('fx', 'missing_5')
                mart_where: v >= 50
                superseded: source('fx', 'missing_5')
                superseded_where: v < 50
                quarantine: source('fx', 'missing_5')
                quarantine_where: v is null
          - ml_warehouse.rows_accounted_for:
              name: accounted_row_lost_errors
              arguments:
                mart: source('fx', 'missing_5')
                mart_where: v is not null
          - ml_warehouse.rows_accounted_for:
              name: accounted_row_twice_errors
              arguments:
                mart: source('fx', 'missing_5')
                mart_where: v is not null
                quarantine: source('fx', 'missing_6')
                quarantine_where: v is null
          - ml_warehouse.rows_accounted_for:
              name: accounted_mart_only_passes
              arguments:
                mart: source('fx', 'missing_5')
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_5pct_passes}
              - ml_warehouse.missing_rate:
                  name: missing_5pct_column_meta_warns
                  arguments: {threshold: 0.04}
      - name: missing_6
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_6pct_warns}
      - name: cells_10
        data_tests:
          - ml_warehouse.missing_rate: {name: missing_model_10_of_200_passes}
      - name: cells_11
        data_tests:
          - ml_warehouse.missing_rate: {name: missing_model_11_of_200_warns}
      - name: empty
        data_tests:
          - ml_warehouse.missing_rate: {name: missing_model_empty_passes}
          - ml_warehouse.duplicate_rate: {name: duplicate_row_empty_passes}
          - ml_warehouse.not_empty: {name: not_empty_empty_errors}
          - ml_warehouse.row_count_between:
              name: row_count_empty_errors
              arguments: {min_value: 1}
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_empty_passes}
              - ml_warehouse.duplicate_rate: {name: duplicate_empty_passes}
              - ml_warehouse.outlier_rate: {name: outlier_empty_passes}
              - ml_warehouse.accepted_range:
                  name: range_empty_passes
                  arguments: {min_value: 0, max_value: 1}
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_empty_passes}
      - name: all_null
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_all_null_warns}
              - ml_warehouse.duplicate_rate: {name: duplicate_all_null_passes}
              - ml_warehouse.outlier_rate: {name: outlier_all_null_passes}
              - ml_warehouse.accepted_range:
                  name: range_all_null_passes
                  arguments: {min_value: 0, max_value: 1}
      - name: single_row
        data_tests:
          - ml_warehouse.not_empty: {name: not_empty_single_row_passes}
          - ml_warehouse.duplicate_rate: {name: duplicate_row_single_row_passes}
          - ml_warehouse.row_count_between:
              name: row_count_single_row_passes
              arguments: {min_value: 1, max_value: 1}
          - ml_warehouse.row_count_between:
              name: row_count_single_row_above_max_errors
              arguments: {max_value: 0}
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_single_row_passes}
              - ml_warehouse.outlier_rate: {name: outlier_single_row_passes}
          - name: email
            data_tests:
              - ml_warehouse.matches_regex:
                  name: regex_single_row_passes
                  arguments: {pattern: "var('email_pattern')"}
      - name: single_null
        columns:
          - name: v
            data_tests:
              - ml_warehouse.missing_rate: {name: missing_single_null_warns}
      - name: repeated
        columns:
          - name: v
            data_tests:
              - ml_warehouse.outlier_rate: {name: outlier_repeated_value_passes}
              - ml_warehouse.duplicate_rate: {name: duplicate_repeated_value_errors}
      - name: dup_1
        meta:
          unique_key: k
        columns:
          - name: k
            data_tests:
              - ml_warehouse.duplicate_rate: {name: duplicate_1pct_passes}
      - name: dup_2
        meta:
          unique_key: k
        columns:
          - name: k
            data_tests:
              - ml_warehouse.duplicate_rate: {name: duplicate_1pct_plus_one_row_errors}
              - ml_warehouse.duplicate_rate:
                  name: duplicate_severity_warn_warns
                  config: {severity: warn}
      - name: dup_pairs
        data_tests:
          - ml_warehouse.duplicate_rate:
              name: duplicate_pairs_errors
              arguments: {columns: [k, g]}
          - ml_warehouse.duplicate_rate:
              name: duplicate_pairs_threshold_passes
              arguments: {columns: [k, g], threshold: 0.02}
      - name: dup_rows
        data_tests:
          - ml_warehouse.duplicate_rate: {name: duplicate_rows_1pct_passes}
      - name: outliers_10
        columns:
          - name: v
            data_tests:
              - ml_warehouse.outlier_rate: {name: outlier_10pct_passes}
              - ml_warehouse.outlier_rate:
                  name: outlier_factor_large_passes
                  arguments: {factor: 20, threshold: 0}
      - name: outliers_11
        columns:
          - name: v
            data_tests:
              - ml_warehouse.outlier_rate: {name: outlier_11pct_warns}
      - name: outliers_grouped
        columns:
          - name: v
            data_tests:
              - ml_warehouse.outlier_rate:
                  name: outlier_grouped_warns_at_4pct
                  arguments: {group_by: grp, threshold: 0.04}
              - ml_warehouse.outlier_rate:
                  name: outlier_ungrouped_passes_at_4pct
                  arguments: {threshold: 0.04}
      - name: range_10
        columns:
          - name: v
            data_tests:
              - ml_warehouse.accepted_range:
                  name: range_mostly_90_passes
                  arguments: {min_value: 0, max_value: 100, mostly: 0.9}
              - ml_warehouse.accepted_range:
                  name: range_strict_errors
                  arguments: {min_value: 0, max_value: 100}
              - ml_warehouse.accepted_range:
                  name: range_exclusive_errors
                  arguments: {min_value: 10, max_value: 200, inclusive: false, mostly: 0.9}
      - name: range_11
        columns:
          - name: v
            data_tests:
              - ml_warehouse.accepted_range:
                  name: range_mostly_90_fails
                  arguments: {min_value: 0, max_value: 100, mostly: 0.9}
      - name: emails_10
        columns:
          - name: email
            data_tests:
              - ml_warehouse.matches_regex:
                  name: regex_mostly_90_passes
                  arguments: {pattern: "var('email_pattern')", mostly: 0.9}
          - name: v
            data_tests:
              - ml_warehouse.accepted_range:
                  name: range_ignores_nulls_passes
                  arguments: {min_value: 0, max_value: 98}
      - name: emails_11
        columns:
          - name: email
            data_tests:
              - ml_warehouse.matches_regex:
                  name: regex_mostly_90_fails
                  arguments: {pattern: "var('email_pattern')", mostly: 0.9}
              - ml_warehouse.matches_regex:
                  name: regex_mostly_90_severity_warn_warns
                  arguments: {pattern: "var('email_pattern')", mostly: 0.9}
                  config: {severity: warn}
      - name: fresh_23h59
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_23h59_passes}
      - name: fresh_24h
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_exactly_24h_passes}
      - name: stale_24h01
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_24h01_warns}
      - name: stale_48h01
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_48h01_errors}
              - ml_warehouse.recency:
                  name: recency_48h01_severity_warn_warns
                  config: {severity: warn}
      - name: fresh_tz
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_timestamptz_passes}
      - name: fresh_text
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_text_passes}
      - name: null_times
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_all_null_warns}
      - name: meta_2h
        meta:
          freshness_warn_hours: 1
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: recency_source_meta_warns}
      - name: clock_now
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: clock_recency_1h_passes}
      - name: clock_25h
        columns:
          - name: loaded_at
            data_tests:
              - ml_warehouse.recency: {name: clock_recency_25h_warns}
      - name: typed
        data_tests:
          - ml_warehouse.expected_column_types:
              name: types_match_passes
              arguments:
                column_types:
                  id: bigint
                  name: text
                  amount: double precision
                  flag: bool
                  loaded_at: timestamp
          - ml_warehouse.expected_column_types:
              name: types_mismatch_errors
              arguments:
                column_types: {id: integer, name: varchar, gone: varchar}
          - ml_warehouse.expected_column_types:
              name: types_extra_column_errors
              arguments:
                column_types: {id: bigint}
                allow_extra_columns: false
"""

MODELS = {
    # downstream of an error-level failure (dup_2's duplicate_rate) and of a warning only
    "after_error.sql": "select * from {{ source('fx', 'dup_2') }}",
    "after_warning.sql": "select * from {{ source('fx', 'missing_6') }}",
    # model meta and column meta override the vars
    "model_meta.sql": "select * from {{ source('fx', 'missing_6') }}",
}

MODELS_YML = """
version: 2

models:
  - name: after_error
  - name: after_warning
  - name: model_meta
    config:
      meta:
        missing_rate_warn: 0.06
        outlier_rate_warn: 0.2
    data_tests:
      - ml_warehouse.expected_column_types: {name: types_from_yaml_passes}
    columns:
      - name: v
        data_type: bigint
        config:
          meta:
            outlier_iqr_factor: 0.1
        data_tests:
          - ml_warehouse.missing_rate: {name: missing_model_meta_passes}
          - ml_warehouse.outlier_rate: {name: outlier_column_meta_factor_warns}
"""


def quality_vars() -> dict[str, Any]:
    """The project's quality vars, so the fixtures judge with the real defaults."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return {key: project["vars"][key] for key in QUALITY_KEYS}


@dataclass(frozen=True)
class FixtureProject:
    """The temp project, its warehouse, and a runner for dbt in it."""

    root: Path
    warehouse: Path

    def dbt(self, *args: str, dbt_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run dbt; return run_results.json (dbt exits 1 when a test fails, by design here)."""
        command = [
            str(DBT),
            *args,
            "--project-dir",
            str(self.root),
            "--profiles-dir",
            str(self.root),
        ]
        if dbt_vars:
            command += ["--vars", json.dumps(dbt_vars)]
        env = {
            **os.environ,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_TARGET_PATH": str(self.root / "target"),
            "DBT_LOG_PATH": str(self.root / "logs"),
        }
        result = subprocess.run(
            command, cwd=self.root, env=env, capture_output=True, text=True, timeout=600
        )
        if result.returncode not in (0, 1):
            raise AssertionError(f"dbt {' '.join(args)} crashed:\n{result.stdout[-6000:]}")
        run_results = self.root / "target" / "run_results.json"
        return json.loads(run_results.read_text(encoding="utf-8"))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql).fetchall()


def statuses(run_results: dict[str, Any]) -> dict[str, str]:
    """Node name -> status ('pass', 'warn', 'fail', 'success', 'skipped', 'error') of each
    model and test (not the tool's package's on-run-start hooks)."""
    return {
        r["unique_id"].split(".")[2]: r["status"]
        for r in run_results["results"]
        if not r["unique_id"].startswith("operation.")
    }


def make_project(root: Path) -> FixtureProject:
    warehouse = root / "fixtures.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute(FIXTURE_SQL)
    project = {
        "name": "quality_fixtures",
        "version": "1.0",
        "config-version": 2,
        "profile": "quality_fixtures",
        "model-paths": ["models"],
        "macro-paths": ["macros"],
        "test-paths": ["tests"],
        "dispatch": [
            {"macro_namespace": "dbt", "search_order": ["quality_fixtures", "ml_warehouse", "dbt"]}
        ],
        "vars": quality_vars(),
        "models": {"quality_fixtures": {"+materialized": "view"}},
    }
    profiles = {
        "quality_fixtures": {
            "target": "duckdb",
            "outputs": {"duckdb": {"type": "duckdb", "path": str(warehouse), "threads": 1}},
        }
    }
    # The tool's dbt package, as every project gets it: packages.yml and the link.
    (root / "packages.yml").write_text(f"packages:\n  - local: {dbt_package.LINK}\n")
    dbt_package.link(root)
    (root / "dbt_project.yml").write_text(yaml.safe_dump(project), encoding="utf-8")
    (root / "profiles.yml").write_text(yaml.safe_dump(profiles), encoding="utf-8")
    models = root / "models"
    models.mkdir()
    (models / "_sources.yml").write_text(SOURCES_YML, encoding="utf-8")
    (models / "_models.yml").write_text(MODELS_YML, encoding="utf-8")
    for name, sql in MODELS.items():
        (models / name).write_text(sql + "\n", encoding="utf-8")
    return FixtureProject(root, warehouse)

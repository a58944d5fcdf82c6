"""The generic quality tests at their edges, on tiny tables in a temp DuckDB (one dbt build).

Each fixture test is named for its expected outcome; statuses come from dbt's
run_results.json: pass, warn, fail (an error-level failure), success/skipped
for models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
from quality_fixtures import QUALITY_NOW, FixtureProject, statuses

from monitoring.config import Thresholds, project_vars
from monitoring.manifest import discover, load_manifest
from monitoring.metrics import measure_table

EXPECTED = {
    # missing_rate: exactly 5 % passes, 5 % + one row warns; meta and degenerate inputs
    "missing_5pct_passes": "pass",
    "missing_6pct_warns": "warn",
    "missing_5pct_column_meta_warns": "warn",
    "missing_model_10_of_200_passes": "pass",
    "missing_model_11_of_200_warns": "warn",
    "missing_model_meta_passes": "pass",
    "missing_empty_passes": "pass",
    "missing_model_empty_passes": "pass",
    "missing_all_null_warns": "warn",
    "missing_single_row_passes": "pass",
    "missing_single_null_warns": "warn",
    # duplicate_rate: exactly 1 % passes, one more duplicate row errors
    "duplicate_1pct_passes": "pass",
    "duplicate_1pct_plus_one_row_errors": "fail",
    "duplicate_severity_warn_warns": "warn",
    "duplicate_pairs_errors": "fail",
    "duplicate_pairs_threshold_passes": "pass",
    "duplicate_rows_1pct_passes": "pass",
    "duplicate_empty_passes": "pass",
    "duplicate_row_empty_passes": "pass",
    "duplicate_all_null_passes": "pass",
    "duplicate_row_single_row_passes": "pass",
    "duplicate_repeated_value_errors": "fail",
    # outlier_rate: exactly 10 % passes, 11 % warns; IQR = 0; per group
    "outlier_10pct_passes": "pass",
    "outlier_11pct_warns": "warn",
    "outlier_factor_large_passes": "pass",
    "outlier_column_meta_factor_warns": "warn",
    "outlier_grouped_warns_at_4pct": "warn",
    "outlier_ungrouped_passes_at_4pct": "pass",
    "outlier_empty_passes": "pass",
    "outlier_all_null_passes": "pass",
    "outlier_single_row_passes": "pass",
    "outlier_repeated_value_passes": "pass",
    # accepted_range / matches_regex: exactly `mostly` passes, one row more fails
    "range_mostly_90_passes": "pass",
    "range_mostly_90_fails": "fail",
    "range_strict_errors": "fail",
    "range_exclusive_errors": "fail",
    "range_ignores_nulls_passes": "pass",
    "range_empty_passes": "pass",
    "range_all_null_passes": "pass",
    "regex_mostly_90_passes": "pass",
    "regex_mostly_90_fails": "fail",
    "regex_mostly_90_severity_warn_warns": "warn",
    "regex_single_row_passes": "pass",
    # recency against quality_now: 23h59m passes, exactly 24 h passes, 24h01m warns, 48h01m errors
    "recency_23h59_passes": "pass",
    "recency_exactly_24h_passes": "pass",
    "recency_24h01_warns": "warn",
    "recency_48h01_errors": "fail",
    "recency_48h01_severity_warn_warns": "warn",
    "recency_timestamptz_passes": "pass",
    "recency_text_passes": "pass",
    "recency_empty_passes": "pass",
    "recency_all_null_warns": "warn",
    "recency_source_meta_warns": "warn",
    # rows_accounted_for: raw = mart + superseded + quarantined, exactly
    "accounted_parts_add_up_passes": "pass",
    "accounted_row_lost_errors": "fail",
    "accounted_row_twice_errors": "fail",
    "accounted_mart_only_passes": "pass",
    # counts and types
    "not_empty_empty_errors": "fail",
    "not_empty_single_row_passes": "pass",
    "row_count_empty_errors": "fail",
    "row_count_single_row_passes": "pass",
    "row_count_single_row_above_max_errors": "fail",
    "types_match_passes": "pass",
    "types_mismatch_errors": "fail",
    "types_extra_column_errors": "fail",
    "types_from_yaml_passes": "pass",
    # models: downstream of an error-level failure, and of a warning only
    "after_error": "skipped",
    "after_warning": "success",
    "model_meta": "success",
}


def test_every_edge_has_its_expected_status(fixture_build: dict[str, Any]) -> None:
    assert statuses(fixture_build) == EXPECTED


def test_failures_count_the_offending_values(fixture_build: dict[str, Any]) -> None:
    """`failures` is the count behind a rate (0 within threshold); recency gives its level."""
    failures = {r["unique_id"].split(".")[2]: r["failures"] for r in fixture_build["results"]}
    assert failures["missing_5pct_passes"] == 0
    assert failures["missing_6pct_warns"] == 6
    assert failures["missing_model_11_of_200_warns"] == 11
    assert failures["missing_all_null_warns"] == 3
    assert failures["duplicate_1pct_passes"] == 0
    assert failures["duplicate_1pct_plus_one_row_errors"] == 2
    assert failures["duplicate_pairs_errors"] == 2
    assert failures["outlier_11pct_warns"] == 11
    assert failures["outlier_grouped_warns_at_4pct"] == 2
    assert failures["range_mostly_90_passes"] == 0
    assert failures["range_mostly_90_fails"] == 11
    assert failures["regex_mostly_90_fails"] == 11
    assert failures["recency_23h59_passes"] == 0
    assert failures["recency_24h01_warns"] == 1
    assert failures["recency_48h01_errors"] == 2
    assert failures["types_mismatch_errors"] == 2
    assert failures["types_extra_column_errors"] == 4


def test_row_level_failures_are_stored_in_the_audit_schema(
    fixture_build: dict[str, Any], fixture_project: FixtureProject
) -> None:
    """Every out-of-range / non-matching row is kept, within tolerance or not; so is each
    duplicate_rate test's summary row (a scoped check adds to it)."""
    rows = fixture_project.query(
        "select table_name from information_schema.tables where table_schema = 'audit' "
        "order by table_name"
    )
    assert [r[0] for r in rows] == sorted(
        name for name in EXPECTED if name.startswith(("range_", "regex_", "duplicate_"))
    )
    summary = fixture_project.query(
        "select row_count, duplicate_count, failures, latest_load_id, counted"
        " from audit.duplicate_1pct_plus_one_row_errors"
    )
    assert summary == [(101, 2, 2, None, "whole table")]  # no dlt load id: nothing to add to
    over = fixture_project.query(
        "select count(*), min(v), max(v), sum(quality_over_tolerance), max(quality_failing_count),"
        " max(quality_value_count) from audit.range_mostly_90_fails"
    )
    assert over == [(11, 200, 200, 11, 11, 100)]
    within = fixture_project.query(
        "select count(*), sum(quality_over_tolerance), max(quality_passing_share)"
        " from audit.range_mostly_90_passes"
    )
    assert within == [(10, 0, 0.9)]
    emails = fixture_project.query("select email from audit.regex_mostly_90_fails order by email")
    assert [e[0] for e in emails] == sorted(f"bad{i}" for i in range(11))
    assert fixture_project.query("select count(*) from audit.range_empty_passes") == [(0,)]


def test_recency_uses_the_run_time_without_quality_now(
    fixture_build: dict[str, Any], fixture_project: FixtureProject
) -> None:
    run_results = fixture_project.dbt(
        "test", "--select", "clock_recency_1h_passes", "clock_recency_25h_warns"
    )
    assert statuses(run_results) == {
        "clock_recency_1h_passes": "pass",
        "clock_recency_25h_warns": "warn",
    }


MONITOR_STATUS = {"pass": "ok", "warn": "warn", "fail": "error"}
# (source table, monitor metric, column or None) -> the fixture test judging the same thing
SAME_JUDGEMENT = {
    ("missing_5", "missing_rate", "v"): "missing_5pct_passes",
    ("missing_6", "missing_rate", "v"): "missing_6pct_warns",
    ("cells_10", "missing_rate", None): "missing_model_10_of_200_passes",
    ("cells_11", "missing_rate", None): "missing_model_11_of_200_warns",
    ("empty", "missing_rate", "v"): "missing_empty_passes",
    ("all_null", "missing_rate", "v"): "missing_all_null_warns",
    ("single_row", "missing_rate", "v"): "missing_single_row_passes",
    ("single_null", "missing_rate", "v"): "missing_single_null_warns",
    ("dup_1", "duplicate_rate", "k"): "duplicate_1pct_passes",
    ("dup_2", "duplicate_rate", "k"): "duplicate_1pct_plus_one_row_errors",
    ("outliers_10", "outlier_rate", "v"): "outlier_10pct_passes",
    ("outliers_11", "outlier_rate", "v"): "outlier_11pct_warns",
    ("repeated", "outlier_rate", "v"): "outlier_repeated_value_passes",
    ("single_row", "outlier_rate", "v"): "outlier_single_row_passes",
    ("fresh_23h59", "freshness_hours", "loaded_at"): "recency_23h59_passes",
    ("fresh_24h", "freshness_hours", "loaded_at"): "recency_exactly_24h_passes",
    ("stale_24h01", "freshness_hours", "loaded_at"): "recency_24h01_warns",
    ("stale_48h01", "freshness_hours", "loaded_at"): "recency_48h01_errors",
    ("fresh_tz", "freshness_hours", "loaded_at"): "recency_timestamptz_passes",
    ("fresh_text", "freshness_hours", "loaded_at"): "recency_text_passes",
    ("null_times", "freshness_hours", "loaded_at"): "recency_all_null_warns",
    ("meta_2h", "freshness_hours", "loaded_at"): "recency_source_meta_warns",
}


def test_the_monitor_judges_the_fixtures_like_the_tests(
    fixture_build: dict[str, Any], fixture_project: FixtureProject
) -> None:
    """One config, one semantics: the monitor's verdict on each fixture equals the test's."""
    target_dir = fixture_project.root / "target"
    manifest = load_manifest(target_dir)
    thresholds = Thresholds(project_vars(fixture_project.root, fixture_build))
    targets = {t.identifier: t for t in discover(manifest, fixture_build) if t.kind == "source"}
    now = datetime.fromisoformat(QUALITY_NOW.replace("Z", "+00:00")).astimezone(UTC)
    verdicts = {}
    with duckdb.connect(str(fixture_project.warehouse), read_only=True) as con:
        for table, metric, column in SAME_JUDGEMENT:
            measured = measure_table(con, targets[table], thresholds, now)
            [found] = [m for m in measured.metrics if m.metric == metric and m.column == column]
            verdicts[(table, metric, column)] = found.status
    expected = {key: MONITOR_STATUS[EXPECTED[test]] for key, test in SAME_JUDGEMENT.items()}
    assert verdicts == expected

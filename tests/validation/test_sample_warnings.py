"""On the sample, dbt warns about exactly the generator's defects that exceed a threshold.

The expected warnings are derived from the generator's manifest (its exact
defect counts) and the thresholds the project resolves (vars, model and
column meta, read the monitor's way), not hard-coded: a defect whose rate is
above its threshold must warn, and nothing else may.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.config import Thresholds, project_vars

if TYPE_CHECKING:
    from tests.conftest import Sample

ROOT = Path(__file__).resolve().parents[2]

Key = tuple[str, str, str | None]  # (generic test, schema.table, column or None)


def _relation(manifest: dict[str, Any], unique_id: str) -> tuple[str, dict[str, Any]]:
    node = manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
    name = node.get("alias") or node.get("identifier") or node["name"]
    return f"{node['schema']}.{name}", node


def _meta(node: dict[str, Any]) -> dict[str, Any]:
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def _tests(manifest: dict[str, Any]) -> dict[str, tuple[Key, dict[str, Any]]]:
    """Test unique_id -> ((test name, relation, column), the test's kwargs)."""
    out = {}
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "test" or not node.get("test_metadata"):
            continue
        kwargs = node["test_metadata"].get("kwargs") or {}
        tested = node.get("attached_node") or node["depends_on"]["nodes"][0]
        relation, _ = _relation(manifest, tested)
        column = node.get("column_name") or kwargs.get("column_name")
        out[uid] = ((node["test_metadata"]["name"], relation, column), kwargs)
    return out


def test_sample_warnings_are_exactly_the_injected_defects_above_threshold(
    built_warehouse: Sample,
) -> None:
    target = Path(built_warehouse.env["DBT_TARGET_PATH"])
    run_results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    tests = _tests(manifest)
    by_key = {key: kwargs for key, kwargs in tests.values()}
    assert len(by_key) == len(tests), "one test of a kind per column"
    thresholds = Thresholds(project_vars(ROOT, run_results))

    def threshold(setting: str, relation_id: str, column: str | None = None) -> float:
        _, node = _relation(manifest, relation_id)
        columns = node.get("columns") or {}
        return thresholds.get(setting, _meta(node), _meta(columns.get(column or "", {})))

    users = built_warehouse.manifest["users"]
    latest = users["latest"]
    events = built_warehouse.manifest["events"]
    dim_users = "model.ml_warehouse_demo.dim_users"
    null_ages = latest["missing_age"] + latest["non_numeric_age"] + latest["impossible_age"]
    null_emails = latest["invalid_email"]  # dim_users.email and email_domain are null then
    dim_users_cells = users["distinct_users"] * len(manifest["nodes"][dim_users]["columns"])
    valid_events = events["distinct_events"] - events["invalid_occurred_at"]
    mostly = float(by_key[("matches_regex", "staging.stg_users__users", "email")]["mostly"])

    def above(count: int, total: int, limit: float) -> bool:
        """The contract: a rate exactly at its threshold passes."""
        return count / total > limit

    # test that sees the defect -> does the sample's defect rate exceed its threshold?
    defects: dict[Key, bool] = {
        ("duplicate_rate", "raw.users", None): above(
            users["exact_duplicates"],
            users["raw_rows"],
            threshold("duplicate_rate_error", "source.ml_warehouse_demo.users.users"),
        ),
        ("missing_rate", "marts.dim_users", "age"): above(
            null_ages, users["distinct_users"], threshold("missing_rate_warn", dim_users, "age")
        ),
        ("missing_rate", "marts.dim_users", "email"): above(
            null_emails, users["distinct_users"], threshold("missing_rate_warn", dim_users, "email")
        ),
        ("missing_rate", "marts.dim_users", None): above(
            null_ages + 2 * null_emails, dim_users_cells, threshold("missing_rate_warn", dim_users)
        ),
        # mostly: the share of valid emails must be at least `mostly`
        ("matches_regex", "staging.stg_users__users", "email"): (
            (users["distinct_users"] - null_emails) / users["distinct_users"] < mostly
        ),
        ("outlier_rate", "marts.fct_events", "value"): above(
            events["value_outliers"],
            valid_events,
            threshold("outlier_rate_warn", "model.ml_warehouse_demo.fct_events", "value"),
        ),
    }
    assert set(defects) <= set(by_key), "each defect is watched by a test in the project"
    expected = {key for key, warns in defects.items() if warns}

    outcomes = {
        tests[r["unique_id"]][0]: r["status"]
        for r in run_results["results"]
        if r["unique_id"] in tests
    }
    assert {s for s in outcomes.values()} <= {"pass", "warn"}, "no test failed on the sample"
    raised = {key for key, status in outcomes.items() if status == "warn"}
    assert raised == expected
    # this sample (300 users, seed 7) has 6 exact duplicates in 357 raw rows (1.7 % > 1 %)
    assert ("duplicate_rate", "raw.users", None) in expected

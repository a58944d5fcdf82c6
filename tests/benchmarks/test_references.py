"""The DuckDB-only reference (the floor) computes what the pandas reference computes: the
same three marts, row for row, on a generated sample with every planted defect."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchmarks import duckdb_reference, pandas_reference
from demo.generator import generate

KEYS = {"dim_users": "user_id", "fct_events": "event_id", "category_stats": "category"}


def rows(path: Path, key: str) -> list[tuple[Any, ...]]:
    """The table's rows in key order, each value as plain Python (NaN and NA as None)."""
    frame = pd.read_parquet(path).sort_values(key).astype(object)
    return [
        tuple(None if v is None or v is pd.NA or v is pd.NaT or v != v else v for v in row)
        for row in frame.itertuples(index=False)
    ]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return str(a) == str(b) if a is not None and b is not None else a is b


@pytest.mark.parametrize("users_only", [False, True])
def test_the_duckdb_reference_equals_the_pandas_reference(tmp_path: Path, users_only: bool) -> None:
    inbox = tmp_path / "inbox"
    generate(inbox, users=400, seed=11, segment_size=700)
    ours = duckdb_reference.run(inbox, tmp_path / "duckdb", users_only)
    theirs = pandas_reference.run(inbox, tmp_path / "pandas", users_only)
    assert ours == theirs
    assert set(ours) == ({"dim_users"} if users_only else set(KEYS))
    for mart in ours:
        a = rows(tmp_path / "duckdb" / f"{mart}.parquet", KEYS[mart])
        b = rows(tmp_path / "pandas" / f"{mart}.parquet", KEYS[mart])
        assert len(a) == len(b) == ours[mart] > 0
        for x, y in zip(a, b, strict=True):
            assert len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True)), (x, y)
    if not users_only:  # the planted defects reach the marts the same way in both
        users = pd.read_parquet(tmp_path / "duckdb" / "dim_users.parquet")
        events = pd.read_parquet(tmp_path / "duckdb" / "fct_events.parquet")
        assert users["is_age_imputed"].any() and (~users["is_valid_email"]).any()
        assert events["is_value_outlier"].any()

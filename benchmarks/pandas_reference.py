"""A pandas, in-memory reference for the warehouse's transforms: the baseline to beat.

`python -m benchmarks.pandas_reference --inbox DIR --out DIR` reads the users CSV
exports and the events JSONL segments the sample generator writes, applies the
transforms the dbt models apply, and writes the three marts as Parquet:

- users: exact duplicates out, rows without a user_id or a parsable updated_at
  out, the latest version per user, email trimmed + lower-cased + checked with
  the project's regex (domain split off), age parsed and range-checked, the
  mean imputed for missing/invalid ages, age groups (right-inclusive bins);
- events: unparsable lines out, re-sent events collapsed on event_id (first
  occurrence kept), rows with an unparsable occurred_at out, hour and day of
  week (Monday = 0), per-category mean / sample std / count, and the 1.5 x IQR
  outlier flag with linear-interpolation quartiles.

It is written the way a careful pandas user would write it (vectorised string and
datetime ops, groupby/transform, no apply over rows); the only per-line Python is
`json.loads`, because pandas' JSON-lines reader refuses a file with one truncated
line and every stream segment has some. It does less than the warehouse (no
orders, products, quarantine tables, tests or monitor), so the comparison
favours pandas.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# The dbt project's vars (dbt_project.yml): the same rules, the same numbers.
EMAIL_PATTERN = r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$"
AGE_MIN, AGE_MAX = 0, 120
IQR_FACTOR = 1.5
AGE_BINS = [0, 25, 35, 50, 100]
AGE_LABELS = ["young", "adult", "middle", "senior"]
USER_COLUMNS = ["user_id", "name", "email", "age", "country", "signup_at", "updated_at"]
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def read_users(folder: Path) -> pd.DataFrame:
    """Every users CSV row as text, with the file and row order it came in."""
    frames = []
    for path in sorted(folder.glob("*.csv")):
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[], on_bad_lines="skip"
        )
        frame["_source_file"] = path.name
        frame["_source_row"] = np.arange(len(frame))
        frames.append(frame)
    users = pd.concat(frames, ignore_index=True)
    # Lines with too few fields come back padded with NaN rather than skipped: drop them.
    return users[users["updated_at"].notna()]


def dim_users(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per user: the latest valid version, validated, imputed, banded."""
    users = raw.assign(
        user_id=pd.to_numeric(raw["user_id"].str.strip(), errors="coerce").astype("Int64"),
        updated_at=pd.to_datetime(
            raw["updated_at"].str.strip(), format=TIMESTAMP_FORMAT, errors="coerce"
        ),
    )
    valid = users["user_id"].notna() & users["updated_at"].notna()
    valid &= ~raw.duplicated(subset=USER_COLUMNS, keep="first")
    latest = (
        users[valid]
        .sort_values(
            ["user_id", "updated_at", "_source_file", "_source_row"],
            ascending=[True, False, False, False],
        )
        .drop_duplicates("user_id", keep="first")
    )

    email = latest["email"].str.strip().str.lower().replace("", None)
    is_valid_email = email.str.match(EMAIL_PATTERN).fillna(False).astype(bool)
    email = email.where(is_valid_email)
    age = pd.to_numeric(latest["age"].str.strip(), errors="coerce")
    is_valid_age = age.between(AGE_MIN, AGE_MAX) & (age == age.round())
    age = age.where(is_valid_age)
    age_imputed = age.fillna(age.mean())
    return pd.DataFrame(
        {
            "user_id": latest["user_id"],
            "name": latest["name"].str.strip(),
            "email": email,
            "email_domain": email.str.split("@").str[1],
            "is_valid_email": is_valid_email,
            "country": latest["country"].str.strip().str.upper().replace("", None),
            "age": age.astype("Int64"),
            "age_imputed": age_imputed,
            "is_age_imputed": age.isna(),
            "age_group": pd.cut(age_imputed, AGE_BINS, right=True, labels=AGE_LABELS),
            "signup_at": pd.to_datetime(
                latest["signup_at"].str.strip(), format=TIMESTAMP_FORMAT, errors="coerce"
            ),
            "updated_at": latest["updated_at"],
        }
    ).reset_index(drop=True)


def read_events(folder: Path) -> pd.DataFrame:
    """Every parsable event line of every segment, in stream order."""
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a truncated line: the warehouse rejects it too
    return pd.DataFrame.from_records(rows)


def fct_events(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Valid, de-duplicated events with row features and their category's statistics."""
    events = raw.drop_duplicates("event_id", keep="first")
    events = events.assign(
        value=pd.to_numeric(events["value"], errors="coerce"),
        occurred_at=pd.to_datetime(events["occurred_at"], format=TIMESTAMP_FORMAT, errors="coerce"),
    )
    events = events[events["event_id"].notna() & events["occurred_at"].notna()].copy()
    events["event_hour"] = events["occurred_at"].dt.hour
    events["event_day_of_week"] = events["occurred_at"].dt.day_of_week

    by_category = events.groupby("category")["value"]
    stats = pd.DataFrame(
        {
            "value_mean": by_category.mean(),
            "value_std": by_category.std(ddof=1),
            "event_count": by_category.size(),
            "q1": by_category.quantile(0.25, interpolation="linear"),
            "q3": by_category.quantile(0.75, interpolation="linear"),
        }
    )
    iqr = stats["q3"] - stats["q1"]
    stats["value_lower_bound"] = stats["q1"] - IQR_FACTOR * iqr
    stats["value_upper_bound"] = stats["q3"] + IQR_FACTOR * iqr
    stats = stats.reset_index()

    events = events.merge(stats, on="category", how="left")
    outlier = (events["value"] < events["value_lower_bound"]) | (
        events["value"] > events["value_upper_bound"]
    )
    fct = pd.DataFrame(
        {
            "event_id": events["event_id"],
            "user_id": events["user_id"],
            "category": events["category"],
            "value": events["value"],
            "occurred_at": events["occurred_at"],
            "event_hour": events["event_hour"],
            "event_day_of_week": events["event_day_of_week"],
            "is_value_outlier": outlier,
            "category_value_mean": events["value_mean"],
            "category_value_std": events["value_std"],
            "category_event_count": events["event_count"],
        }
    )
    return fct, stats


def run(inbox: Path, out: Path, users_only: bool = False) -> dict[str, int]:
    """All transforms (or only the users'); the marts written as Parquet under `out`.
    Returns their row counts."""
    out.mkdir(parents=True, exist_ok=True)
    users = dim_users(read_users(inbox / "users"))
    users.to_parquet(out / "dim_users.parquet", index=False)
    if users_only:
        return {"dim_users": len(users)}
    events, stats = fct_events(read_events(inbox / "events"))
    events.to_parquet(out / "fct_events.parquet", index=False)
    stats.to_parquet(out / "category_stats.parquet", index=False)
    return {"dim_users": len(users), "fct_events": len(events), "category_stats": len(stats)}


def main(
    argv: Sequence[str] | None = None,
    transforms: Callable[[Path, Path, bool], dict[str, int]] = run,
    engine: str = "pandas",
) -> int:
    """The command line of a reference: its `transforms` on --inbox, the marts to --out,
    their row counts and seconds as one JSON line."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{engine}_reference",
        description=f"The warehouse's user and event transforms in {engine} (benchmark baseline).",
    )
    parser.add_argument("--inbox", type=Path, required=True, help="folder with users/, events/")
    parser.add_argument("--out", type=Path, required=True, help="folder for the Parquet marts")
    parser.add_argument("--users-only", action="store_true", help="only dim_users")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = transforms(args.inbox, args.out, args.users_only)
    print(json.dumps({**counts, "seconds": round(time.perf_counter() - started, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

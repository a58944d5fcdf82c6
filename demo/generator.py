"""Deterministic sample data with known, exactly counted defects.

Everything is derived from the seed (numpy ``default_rng`` streams spawned from one
``SeedSequence``); there is no wall clock and no hash/set ordering, so the same arguments
give byte-identical files, ``products.db`` included. Bulk data is generated with numpy and
formatted with pyarrow so 1M users / 10M events stay in the tens of seconds.

Defect rates. Each count is ``max(1, round(rate * base))`` (capped by the rows available),
so even a small sample has every defect at least once:

==============================  ======  ==============================================
constant                        rate    base / notes
==============================  ======  ==============================================
DUPLICATE_RATE                  2 %     initial users; identical line repeated later in file 1
MISSING_AGE_RATE                3 %     rows of each users file; age ``""``
NON_NUMERIC_AGE_RATE            1 %     rows of each users file; age ``abc``
IMPOSSIBLE_AGE_RATE             1 %     rows of each users file; age ``250`` / ``-3`` alternating
INVALID_EMAIL_RATE              3 %     rows of each users file; no ``@`` / no TLD / a space
EMAIL_CLEANUP_RATE              2 %     rows of each users file; valid after trim + lower
UPDATED_USER_RATE               10 %    initial users; new version in users-0002.csv
NEW_USER_RATE                   5 %     initial users; first seen in users-0002.csv
MISSING_USER_ID_RATE            0.5 %   rows of each users file; extra rows, user_id ``""``
INVALID_UPDATED_AT_RATE         0.5 %   rows of each users file; extra rows, ``not-a-date``
MALFORMED_CSV_RATE              0.2 %   rows of each users file; extra lines, 6 or 9 fields
RESENT_EVENT_RATE               1 %     events; byte-identical line repeated in a later segment
LATE_EVENT_RATE                 2 %     events; occurred_at 1-3 days before the segment window
VALUE_OUTLIER_RATE              1 %     events; value ~50x the category's typical value
MALFORMED_JSON_RATE             0.2 %   events; line is a truncated JSON object
INVALID_OCCURRED_AT_RATE        0.2 %   events; occurred_at ``not-a-time``
UNKNOWN_USER_ORDER_RATE         1 %     orders; user_id exists in no users file
==============================  ======  ==============================================

How the rows are laid out (this is what makes the manifest identities exact):

* users-0001.csv: one valid row per initial user (ids 1..N), the exact duplicate copies,
  the missing-user_id rows, the invalid-updated_at rows and the malformed lines.
* users-0002.csv: one new version of each updated user (email and/or age changed,
  strictly newer updated_at; it may fix a defect or carry a new one), the new users
  (ids N+1..N+W), and its own missing-user_id, invalid-updated_at and malformed lines.
* Invalid-updated_at rows use user_ids of their own that appear nowhere else, so they are
  never a version of a counted user and ``distinct_users`` is exactly N + W. Missing-user_id
  rows and malformed lines are extra rows too (malformed lines copy a real row's values).
* Age and email defects are drawn on disjoint rows per attribute. ``latest`` counts what the
  latest version of each user shows. Valid ages are 18..80; a valid email matches
  ``^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$`` after trim + lower.

Events: ``users * events_per_user`` event ids, in non-decreasing time order, plus the re-sent
copies. A malformed line is the truncated line of its own event id (that event is then lost:
it only reaches ``raw._rejected_rows``). Definitions used for the manifest, over the
*distinct events* (first occurrence of each parsable event_id):

* ``late_events``: valid occurred_at more than one day (<= watermark - 86400 s) before the
  watermark, the latest valid occurred_at on any earlier line. Each late event is 1-3 days
  before the first on-time event of its segment and never the first event of its segment.
* ``value_outliers``: outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] of its category, quartiles by
  linear interpolation (numpy default, DuckDB ``quantile_cont``), computed over the distinct
  events with a valid occurred_at (what fct_events holds). Normal values are uniform in
  [0.5, 1.5] x the category's base value, so only the planted outliers fall outside.
* ``by_category`` and ``distinct_events`` count all distinct events (invalid occurred_at too).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DUPLICATE_RATE = 0.02
MISSING_AGE_RATE = 0.03
NON_NUMERIC_AGE_RATE = 0.01
IMPOSSIBLE_AGE_RATE = 0.01
INVALID_EMAIL_RATE = 0.03
EMAIL_CLEANUP_RATE = 0.02
UPDATED_USER_RATE = 0.10
NEW_USER_RATE = 0.05
MISSING_USER_ID_RATE = 0.005
INVALID_UPDATED_AT_RATE = 0.005
MALFORMED_CSV_RATE = 0.002
RESENT_EVENT_RATE = 0.01
LATE_EVENT_RATE = 0.02
VALUE_OUTLIER_RATE = 0.01
MALFORMED_JSON_RATE = 0.002
INVALID_OCCURRED_AT_RATE = 0.002
UNKNOWN_USER_ORDER_RATE = 0.01

# Not defects: names that need CSV quoting, to keep readers honest.
NAME_WITH_COMMA_RATE = 0.02
NAME_WITH_QUOTE_RATE = 0.005

DEFAULT_OUT = Path("data/inbox")
DEFAULT_USERS = 1000
DEFAULT_SEED = 42
DEFAULT_EVENTS_PER_USER = 10
DEFAULT_SEGMENT_SIZE = 5000
DEFAULT_ORDERS_PER_USER = 2
DEFAULT_PRODUCTS = 50

START = 1767225600  # 2026-01-01T00:00:00Z, epoch seconds
DAY = 86400
HOUR = 3600
EVENTS_START = START + 4 * DAY  # leaves room for events up to 3 days late
EVENTS_SPAN = 28 * DAY
LATE_MIN = DAY + HOUR  # strictly more than a day, so "late" never sits on the boundary
LATE_MAX = 3 * DAY
OUTLIER_FACTOR = 50
BLOCK_LINES = 250_000  # events formatted per pyarrow batch

USERS_HEADER = ["user_id", "name", "email", "age", "country", "signup_at", "updated_at"]
USER_FILES = ("users-0001.csv", "users-0002.csv")
INVALID_UPDATED_AT = "not-a-date"
INVALID_OCCURRED_AT = "not-a-time"
NON_NUMERIC_AGE = "abc"
IMPOSSIBLE_AGES = ("250", "-3")
MIN_AGE, MAX_AGE = 18, 80

# Attribute kinds tracked per row so the manifest counts what the files show.
AGE_OK, AGE_MISSING, AGE_NON_NUMERIC, AGE_IMPOSSIBLE = 0, 1, 2, 3
EMAIL_OK, EMAIL_INVALID, EMAIL_CLEANUP = 0, 1, 2

FIRST_NAMES = [
    ("Anna", "anna"),
    ("Ben", "ben"),
    ("Chloé", "chloe"),
    ("David", "david"),
    ("Elif", "elif"),
    ("Fatima", "fatima"),
    ("Georg", "georg"),
    ("Hana", "hana"),
    ("Ivan", "ivan"),
    ("José", "jose"),
    ("Kenji", "kenji"),
    ("Lena", "lena"),
    ("Mateo", "mateo"),
    ("Nora", "nora"),
    ("Oliver", "oliver"),
    ("Priya", "priya"),
    ("Quinn", "quinn"),
    ("Rosa", "rosa"),
    ("Søren", "soren"),
    ("Tomás", "tomas"),
    ("Uma", "uma"),
    ("Viktor", "viktor"),
    ("Wei", "wei"),
    ("Zoë", "zoe"),
]
LAST_NAMES = [
    ("Andersen", "andersen"),
    ("Brown", "brown"),
    ("Costa", "costa"),
    ("Dubois", "dubois"),
    ("Eriksson", "eriksson"),
    ("García", "garcia"),
    ("Hoffmann", "hoffmann"),
    ("Ivanova", "ivanova"),
    ("Jensen", "jensen"),
    ("Kowalski", "kowalski"),
    ("Lopez", "lopez"),
    ("Müller", "muller"),
    ("Nakamura", "nakamura"),
    ("O'Brien", "obrien"),
    ("Patel", "patel"),
    ("Rossi", "rossi"),
    ("Schmidt", "schmidt"),
    ("Tanaka", "tanaka"),
    ("Wójcik", "wojcik"),
    ("Yilmaz", "yilmaz"),
]
EMAIL_DOMAINS = [
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "proton.me",
    "web.de",
    "example.com",
    "acme-corp.io",
    "uni-berlin.de",
]
COUNTRIES = ["DE", "FR", "GB", "US", "ES", "IT", "NL", "PL", "SE", "BR", "IN", "JP"]

EVENT_CATEGORIES = ["click", "view", "search", "add_to_cart", "purchase"]
EVENT_CATEGORY_P = [0.35, 0.30, 0.15, 0.12, 0.08]
EVENT_BASE_CENTS = np.array([100, 50, 200, 2500, 6000], dtype=np.int64)

CURRENCIES = ["EUR", "USD", "GBP"]
CURRENCY_P = [0.5, 0.3, 0.2]
ORDER_STATUSES = ["placed", "shipped", "delivered", "cancelled"]
ORDER_STATUS_P = [0.15, 0.30, 0.45, 0.10]
# updated_at - created_at range in seconds per status (placed orders were never updated).
ORDER_UPDATE_DELAY = [(0, 1), (DAY, 3 * DAY), (3 * DAY, 7 * DAY), (HOUR, 2 * DAY)]
ORDERS_SPAN = 30 * DAY

PRODUCT_CATEGORIES = ["electronics", "books", "home", "toys", "sports", "grocery"]
PRODUCT_ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Smart", "Ultra", "Mini", "Pro"]
PRODUCT_NOUNS = ["Lamp", "Kettle", "Novel", "Puzzle", "Racket", "Speaker", "Blender", "Tea"]


def defect_count(rate: float, base: int) -> int:
    """Exact defect count: at least one whenever there is a row to carry it."""
    if base <= 0:
        return 0
    return min(base, max(1, round(rate * base)))


def _iso(seconds: np.ndarray) -> list[str]:
    """UTC ISO 8601 with Z, second precision."""
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return [t + "Z" for t in text.tolist()]


def _take(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """n distinct members of pool (sorted), fewer if the pool is smaller."""
    n = min(n, len(pool))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(rng.choice(pool, size=n, replace=False)).astype(np.int64)


# ---------------------------------------------------------------- users


def _assign_kinds(
    rng: np.random.Generator, pool: np.ndarray, size: int, rates: Sequence[tuple[int, float]]
) -> np.ndarray:
    """Kinds for rows 0..size-1: disjoint defect sets drawn from pool, the rest kind 0."""
    kinds = np.zeros(size, dtype=np.int8)
    order = rng.permutation(pool)
    at = 0
    for kind, rate in rates:
        n = defect_count(rate, size)
        kinds[order[at : at + n]] = kind
        at += n
    return kinds


AGE_RATES = [
    (AGE_MISSING, MISSING_AGE_RATE),
    (AGE_NON_NUMERIC, NON_NUMERIC_AGE_RATE),
    (AGE_IMPOSSIBLE, IMPOSSIBLE_AGE_RATE),
]
EMAIL_RATES = [(EMAIL_INVALID, INVALID_EMAIL_RATE), (EMAIL_CLEANUP, EMAIL_CLEANUP_RATE)]


def _age_text(ages: np.ndarray, kinds: np.ndarray, impossible: int = 0) -> list[str]:
    """Age column text; impossible ages alternate 250 / -3, continuing from `impossible`."""
    out: list[str] = []
    for age, kind in zip(ages.tolist(), kinds.tolist(), strict=True):
        if kind == AGE_OK:
            out.append(str(age))
        elif kind == AGE_MISSING:
            out.append("")
        elif kind == AGE_NON_NUMERIC:
            out.append(NON_NUMERIC_AGE)
        else:
            out.append(IMPOSSIBLE_AGES[impossible % 2])
            impossible += 1
    return out


def _email_text(emails: list[str], kinds: np.ndarray) -> list[str]:
    out: list[str] = []
    invalid = cleanup = 0
    for email, kind in zip(emails, kinds.tolist(), strict=True):
        if kind == EMAIL_OK:
            out.append(email)
            continue
        local, domain = email.split("@")
        if kind == EMAIL_INVALID:
            variant, invalid = invalid % 3, invalid + 1
            if variant == 0:
                out.append(f"{local}.{domain}")  # no @
            elif variant == 1:
                out.append(f"{local}@{domain.rsplit('.', 1)[0]}")  # no TLD
            else:
                out.append(f"{local.replace('.', ' ', 1)}@{domain}")  # a space
        else:
            variant, cleanup = cleanup % 3, cleanup + 1
            if variant == 0:
                out.append(f" {email.upper()} ")
            elif variant == 1:
                out.append(f"{local.capitalize()}@{domain.capitalize()}  ")
            else:
                out.append(f"  {local.title()}@{domain.upper()}")
    return out


class _People:
    """Names, base emails and countries for a block of ids (pseudo ids for id-less rows)."""

    def __init__(self, rng: np.random.Generator, ids: np.ndarray) -> None:
        n = len(ids)
        first = rng.integers(0, len(FIRST_NAMES), n)
        last = rng.integers(0, len(LAST_NAMES), n)
        domain = rng.integers(0, len(EMAIL_DOMAINS), n)
        self.country = [COUNTRIES[i] for i in rng.integers(0, len(COUNTRIES), n).tolist()]
        comma = _take(rng, np.arange(n), defect_count(NAME_WITH_COMMA_RATE, n)).tolist()
        quote_pool = np.setdiff1d(np.arange(n), comma)
        quote = _take(rng, quote_pool, defect_count(NAME_WITH_QUOTE_RATE, n)).tolist()
        self.name: list[str] = []
        self.email: list[str] = []
        self.email2: list[str] = []
        style = dict.fromkeys(comma, 1) | dict.fromkeys(quote, 2)
        for i, (uid, f, la, d) in enumerate(
            zip(ids.tolist(), first.tolist(), last.tolist(), domain.tolist(), strict=True)
        ):
            fn, fa = FIRST_NAMES[f]
            ln, la_ = LAST_NAMES[la]
            s = style.get(i, 0)
            if s == 1:
                self.name.append(f"{ln}, {fn}")
            elif s == 2:
                self.name.append(f'{fn} "{fn[:3]}" {ln}')
            else:
                self.name.append(f"{fn} {ln}")
            self.email.append(f"{fa}.{la_}{uid}@{EMAIL_DOMAINS[d]}")
            self.email2.append(f"{fa}.{la_}.{uid}@{EMAIL_DOMAINS[(d + 1) % len(EMAIL_DOMAINS)]}")


def _place(keys: list[np.ndarray], rows: list[list[list[str]]]) -> list[list[str]]:
    """Rows in order of their (float) sort keys; ties keep the order given."""
    all_keys = np.concatenate(keys) if keys else np.empty(0)
    flat = [r for group in rows for r in group]
    return [flat[i] for i in np.argsort(all_keys, kind="stable").tolist()]


def _extras(
    rng: np.random.Generator,
    base_rows: list[list[str]],
    n_base: int,
    first_free_id: int,
) -> tuple[list[np.ndarray], list[list[list[str]]], dict[str, int]]:
    """Missing-user_id rows, invalid-updated_at rows and malformed lines for one file."""
    n_missing = defect_count(MISSING_USER_ID_RATE, n_base)
    n_invalid = defect_count(INVALID_UPDATED_AT_RATE, n_base)
    n_malformed = defect_count(MALFORMED_CSV_RATE, n_base)
    ids = np.arange(first_free_id, first_free_id + n_missing + n_invalid)
    people = _People(rng, ids)
    signup = START + rng.integers(0, 14 * DAY, len(ids))
    updated = signup + rng.integers(0, 2 * DAY, len(ids))
    ages = rng.integers(MIN_AGE, MAX_AGE + 1, len(ids)).tolist()
    signup_s, updated_s = _iso(signup), _iso(updated)
    extra: list[list[str]] = []
    for i, uid in enumerate(ids.tolist()):
        missing = i < n_missing
        extra.append(
            [
                "" if missing else str(uid),
                people.name[i],
                people.email[i],
                str(ages[i]),
                people.country[i],
                signup_s[i],
                updated_s[i] if missing else INVALID_UPDATED_AT,
            ]
        )
    malformed: list[list[str]] = []
    sources = rng.integers(0, len(base_rows), n_malformed).tolist() if base_rows else []
    for j, src in enumerate(sources):
        row = base_rows[src]
        malformed.append(row[:-1] if j % 2 == 0 else [*row, "", "extra"])
    keys = [rng.uniform(0, n_base, len(extra)), rng.uniform(0, n_base, len(malformed))]
    counts = {"missing": n_missing, "invalid": n_invalid, "malformed": len(malformed)}
    return keys, [extra, malformed], counts


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(USERS_HEADER)
        writer.writerows(rows)


def _users(rng: np.random.Generator, out: Path, n: int) -> dict[str, Any]:
    n_updated = defect_count(UPDATED_USER_RATE, n)
    n_new = defect_count(NEW_USER_RATE, n)
    n2 = n_updated + n_new
    ids1 = np.arange(1, n + 1)
    ids_new = np.arange(n + 1, n + n_new + 1)

    # ---- file 1: initial versions
    people = _People(rng, np.concatenate([ids1, ids_new]))
    signup = START + rng.integers(0, 14 * DAY, n)
    updated1 = signup + rng.integers(0, 2 * DAY, n)
    age1 = rng.integers(MIN_AGE, MAX_AGE + 1, n)
    age_kind1 = _assign_kinds(rng, np.arange(n), n, AGE_RATES)
    email_kind1 = _assign_kinds(rng, np.arange(n), n, EMAIL_RATES)
    age_text1 = _age_text(age1, age_kind1)
    email_text1 = _email_text(people.email[:n], email_kind1)
    signup_s, updated1_s = _iso(signup), _iso(updated1)
    base1 = [
        [str(i + 1), people.name[i], email_text1[i], age_text1[i], people.country[i]]
        + [signup_s[i], updated1_s[i]]
        for i in range(n)
    ]
    dup = _take(rng, np.arange(n), defect_count(DUPLICATE_RATE, n))
    dup_keys = dup + 0.5 + rng.integers(0, n - dup)  # strictly after the original
    next_id = n + n_new + 1
    keys, groups, extra1 = _extras(rng, base1, n, next_id)
    next_id += extra1["missing"] + extra1["invalid"]
    rows1 = _place(
        [np.arange(n, dtype=float), dup_keys.astype(float), *keys],
        [base1, [base1[i] for i in dup.tolist()], *groups],
    )

    # ---- file 2: updated versions (some fix a defect) and new users
    # One fixer per attribute guarantees that an update repairs a defect.
    fixers: list[int] = []
    age_bad = np.flatnonzero(age_kind1 != AGE_OK)
    if n_updated >= 1 and len(age_bad):
        fixers.append(int(rng.choice(age_bad)))
    email_bad = np.setdiff1d(np.flatnonzero(email_kind1 == EMAIL_INVALID), fixers)
    if n_updated >= 2 and len(email_bad):
        fixers.append(int(rng.choice(email_bad)))
    rest = _take(rng, np.setdiff1d(np.arange(n), fixers), n_updated - len(fixers))
    upd = np.sort(np.concatenate([np.array(fixers, dtype=np.int64), rest]))  # 0-based
    fixer_rows = np.searchsorted(upd, fixers)
    pool2 = np.setdiff1d(np.arange(n2), fixer_rows)
    age_kind2 = _assign_kinds(rng, pool2, n2, AGE_RATES)
    email_kind2 = _assign_kinds(rng, pool2, n2, EMAIL_RATES)
    mode = rng.integers(1, 4, n_updated)  # bit 1: new email, bit 2: new age
    mode |= np.where(email_kind2[:n_updated] != EMAIL_OK, 1, 0)
    mode |= np.where(age_kind2[:n_updated] != AGE_OK, 2, 0)
    if len(fixers) >= 1:
        mode[fixer_rows[0]] |= 2
    if len(fixers) >= 2:
        mode[fixer_rows[1]] |= 1
    # Fresh ages differ from the old valid age; new users draw any valid age.
    old_age = age1[upd]
    shifted = MIN_AGE + (old_age - MIN_AGE + 1 + rng.integers(0, MAX_AGE - MIN_AGE, n_updated)) % (
        MAX_AGE - MIN_AGE + 1
    )
    fresh_upd_age = np.where(
        age_kind1[upd] == AGE_OK, shifted, rng.integers(MIN_AGE, MAX_AGE + 1, n_updated)
    )
    age2 = np.concatenate([fresh_upd_age, rng.integers(MIN_AGE, MAX_AGE + 1, n_new)])
    fresh_age_text = _age_text(age2, age_kind2, int(np.sum(age_kind1 == AGE_IMPOSSIBLE)))
    fresh_email = [people.email2[i] for i in upd.tolist()] + people.email[n:]
    fresh_email_text = _email_text(fresh_email, email_kind2)
    updated2 = updated1[upd] + rng.integers(HOUR, 10 * DAY, n_updated)
    signup_new = START + 14 * DAY + rng.integers(0, 7 * DAY, n_new)
    updated_new = signup_new + rng.integers(0, 2 * DAY, n_new)
    updated2_s, signup_new_s, updated_new_s = _iso(updated2), _iso(signup_new), _iso(updated_new)

    latest_age_kind = age_kind1.copy()
    latest_email_kind = email_kind1.copy()
    base2: list[list[str]] = []
    for r, i in enumerate(upd.tolist()):
        m = int(mode[r])
        email = fresh_email_text[r] if m & 1 else email_text1[i]
        age = fresh_age_text[r] if m & 2 else age_text1[i]
        if m & 1:
            latest_email_kind[i] = email_kind2[r]
        if m & 2:
            latest_age_kind[i] = age_kind2[r]
        base2.append(
            [str(i + 1), people.name[i], email, age, people.country[i], signup_s[i], updated2_s[r]]
        )
    for k in range(n_new):
        r = n_updated + k
        base2.append(
            [
                str(n + k + 1),
                people.name[n + k],
                fresh_email_text[r],
                fresh_age_text[r],
                people.country[n + k],
                signup_new_s[k],
                updated_new_s[k],
            ]
        )
    latest_age_kind = np.concatenate([latest_age_kind, age_kind2[n_updated:]])
    latest_email_kind = np.concatenate([latest_email_kind, email_kind2[n_updated:]])
    keys, groups, extra2 = _extras(rng, base2, n2, next_id)
    next_id += extra2["missing"] + extra2["invalid"]
    rows2 = _place([np.arange(n2, dtype=float), *keys], [base2, *groups])

    users_dir = out / "users"
    _write_csv(users_dir / USER_FILES[0], rows1)
    _write_csv(users_dir / USER_FILES[1], rows2)

    csv_rows = len(rows1) + len(rows2)
    malformed = extra1["malformed"] + extra2["malformed"]
    return {
        "files": {USER_FILES[0]: len(rows1), USER_FILES[1]: len(rows2)},
        "csv_rows": csv_rows,
        "malformed_rows": malformed,
        "raw_rows": csv_rows - malformed,
        "exact_duplicates": len(dup),
        "missing_user_id": extra1["missing"] + extra2["missing"],
        "invalid_updated_at": extra1["invalid"] + extra2["invalid"],
        "superseded_versions": n_updated,
        "distinct_users": n + n_new,
        "updated_users": n_updated,
        "new_users_in_later_files": n_new,
        "latest": {
            "missing_age": int(np.sum(latest_age_kind == AGE_MISSING)),
            "non_numeric_age": int(np.sum(latest_age_kind == AGE_NON_NUMERIC)),
            "impossible_age": int(np.sum(latest_age_kind == AGE_IMPOSSIBLE)),
            "invalid_email": int(np.sum(latest_email_kind == EMAIL_INVALID)),
            "valid_email_needing_cleanup": int(np.sum(latest_email_kind == EMAIL_CLEANUP)),
        },
        "_max_user_id": next_id - 1,
    }


# ---------------------------------------------------------------- events


_HMS = pa.array(
    [f"{h:02d}:{m:02d}:{x:02d}Z" for h in range(24) for m in range(60) for x in range(60)]
)


def _iso_arrow(seconds: np.ndarray) -> pa.Array:
    """Like _iso, as Arrow strings via lookup tables: pc.strftime is ~10x slower."""
    days = (seconds - START) // DAY  # every sample timestamp is at or after START
    first = np.datetime64(START, "s").astype("datetime64[D]")
    n_days = int(days.max()) + 1 if len(days) else 0
    dates = np.datetime_as_string(first + np.arange(n_days), unit="D").tolist()
    date_text = pa.array([d + "T" for d in dates])
    return pc.binary_join_element_wise(
        date_text.take(pa.array(days)), _HMS.take(pa.array((seconds - START) % DAY)), ""
    )


def _float_text(cents: np.ndarray) -> pa.Array:
    """Cents as JSON floats the way Python's json writes them: 3.25, 1.5, 3.0."""
    text = pa.array(cents / 100.0).cast(pa.string())
    whole = pa.array(cents % 100 == 0)
    return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)


def _write_lines(path: Path, lines: pa.Array) -> None:
    """Write a slice of a string array whose values already end in newlines, zero-copy."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, stop = offsets[lines.offset], offsets[lines.offset + len(lines)]
    with path.open("wb") as f:
        f.write(memoryview(lines.buffers()[2])[start:stop])


def _events(
    rng: np.random.Generator, out: Path, n_users: int, per_user: int, seg_size: int
) -> dict[str, Any]:
    n = n_users * per_user  # base events, one event_id each
    user = rng.integers(1, n_users + 1, n)
    cat = rng.choice(len(EVENT_CATEGORIES), size=n, p=EVENT_CATEGORY_P)
    cents = np.rint(EVENT_BASE_CENTS[cat] * (0.5 + rng.random(n))).astype(np.int64)
    times = EVENTS_START + np.sort(rng.integers(0, EVENTS_SPAN, n))

    # Re-sent copies: inserted after base event j = original + gap. With gap >= seg_size
    # at least seg_size lines separate them, so the copy lands in a later segment.
    n_resent = defect_count(RESENT_EVENT_RATE, n)
    cross = n - seg_size >= 10 * n_resent
    lo = seg_size if cross else 1
    orig = _take(rng, np.arange(max(0, n - lo)), n_resent)
    n_resent = len(orig)
    span = np.minimum(2 * seg_size if cross else seg_size, n - orig) - lo  # >= 1
    after = orig + lo + (rng.random(n_resent) * span).astype(np.int64)
    order = np.lexsort((orig, after))
    after, orig = after[order], orig[order]
    total = n + n_resent
    base_pos = np.arange(n) + np.searchsorted(after, np.arange(n), side="left")
    copy_pos = after + 1 + np.arange(n_resent)
    final = np.empty(total, dtype=np.int64)  # base event index of every line
    final[base_pos] = np.arange(n)
    final[copy_pos] = orig

    # The first base event of each segment stays clean: it opens the segment's window.
    seg = base_pos // seg_size
    _, first = np.unique(seg, return_index=True)
    clean = np.ones(n, dtype=bool)
    clean[first] = False
    clean_pool = np.flatnonzero(clean)
    resent_mask = np.zeros(n, dtype=bool)
    resent_mask[orig] = True
    malformed = _take(
        rng, np.flatnonzero(clean & ~resent_mask), defect_count(MALFORMED_JSON_RATE, n)
    )
    bad = np.zeros(n, dtype=bool)
    bad[malformed] = True
    invalid = _take(
        rng, np.flatnonzero(clean & ~resent_mask & ~bad), defect_count(INVALID_OCCURRED_AT_RATE, n)
    )
    bad[invalid] = True
    late = _take(rng, clean_pool[~bad[clean_pool]], defect_count(LATE_EVENT_RATE, n))
    outliers = _take(rng, np.flatnonzero(~bad), defect_count(VALUE_OUTLIER_RATE, n))

    # On-time times never decrease, so a segment's first base event opens its window.
    window_start = np.zeros(int(seg[-1]) + 1 if n else 0, dtype=np.int64)
    window_start[seg[first]] = times[first]
    times[late] = window_start[seg[late]] - rng.integers(LATE_MIN, LATE_MAX + 1, len(late))
    cents[outliers] = np.rint(
        EVENT_BASE_CENTS[cat[outliers]] * OUTLIER_FACTOR * (0.8 + 0.4 * rng.random(len(outliers)))
    ).astype(np.int64)
    invalid_mask = np.zeros(n, dtype=bool)
    invalid_mask[invalid] = True
    cut = dict(
        zip(malformed.tolist(), (0.3 + 0.5 * rng.random(len(malformed))).tolist(), strict=True)
    )

    events_dir = out / "events"
    segments: dict[str, int] = {}
    cats = pa.array(EVENT_CATEGORIES)
    n_segments = -(-total // seg_size)
    per_block = max(1, BLOCK_LINES // seg_size)
    for first_seg in range(0, n_segments, per_block):
        a = first_seg * seg_size
        b = min(total, (first_seg + per_block) * seg_size)
        idx = final[a:b]
        value = _float_text(cents[idx])
        occurred = _iso_arrow(times[idx])
        occurred = pc.if_else(pa.array(invalid_mask[idx]), INVALID_OCCURRED_AT, occurred)
        lines = pc.binary_join_element_wise(
            '{"event_id": "evt-',
            pc.utf8_lpad(pa.array(idx + 1).cast(pa.string()), 8, "0"),
            '", "user_id": ',
            pa.array(user[idx]).cast(pa.string()),
            ', "category": "',
            cats.take(pa.array(cat[idx])),
            '", "value": ',
            value,
            ', "occurred_at": "',
            occurred,
            '"}\n',
            "",
        )
        bad_lines = np.flatnonzero(np.isin(idx, malformed))
        if len(bad_lines):
            cut_text = []
            for p in bad_lines.tolist():
                full = lines[p].as_py().rstrip("\n")
                cut_text.append(full[: int(len(full) * cut[int(idx[p])])] + "\n")
            mask = np.zeros(len(idx), dtype=bool)
            mask[bad_lines] = True
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(cut_text))
        for s in range(first_seg, min(n_segments, first_seg + per_block)):
            name = f"events-{s + 1:06d}.jsonl"
            start = s * seg_size - a
            chunk = lines.slice(start, min(seg_size, total - s * seg_size))
            _write_lines(events_dir / name, chunk)
            segments[name] = len(chunk)

    # value_outliers by its definition: 1.5 x IQR per category over the distinct events
    # with a valid occurred_at.
    population = ~bad
    n_outliers = 0
    for c in range(len(EVENT_CATEGORIES)):
        v = cents[population & (cat == c)] / 100.0
        if len(v):
            q1, q3 = np.percentile(v, [25, 75])
            iqr = q3 - q1
            n_outliers += int(np.sum((v < q1 - 1.5 * iqr) | (v > q3 + 1.5 * iqr)))
    distinct = np.ones(n, dtype=bool)
    distinct[malformed] = False
    by_cat = np.bincount(cat[distinct], minlength=len(EVENT_CATEGORIES))
    return {
        "segments": segments,
        "lines": total,
        "malformed_lines": len(malformed),
        "resent_events": n_resent,
        "distinct_events": n - len(malformed),
        "late_events": len(late),
        "value_outliers": n_outliers,
        "invalid_occurred_at": len(invalid),
        "by_category": {c: int(by_cat[i]) for i, c in enumerate(EVENT_CATEGORIES)},
    }


# ---------------------------------------------------------------- products and orders


def _products(rng: np.random.Generator, out: Path, n: int) -> tuple[dict[str, Any], np.ndarray]:
    cat = rng.integers(0, len(PRODUCT_CATEGORIES), n)
    adj = rng.integers(0, len(PRODUCT_ADJECTIVES), n)
    noun = rng.integers(0, len(PRODUCT_NOUNS), n)
    price_cents = rng.integers(199, 20000, n)
    updated = START + rng.integers(0, 10 * DAY, n)
    updated_s = [
        t.replace("T", " ") + ".000000"
        for t in np.datetime_as_string(updated.astype("datetime64[s]"), unit="s").tolist()
    ]
    rows = [
        (
            i + 1,
            f"{PRODUCT_ADJECTIVES[a]} {PRODUCT_NOUNS[b]} {i + 1}",
            PRODUCT_CATEGORIES[c],
            p / 100.0,
            updated_s[i],
        )
        for i, (a, b, c, p) in enumerate(
            zip(adj.tolist(), noun.tolist(), cat.tolist(), price_cents.tolist(), strict=True)
        )
    ]
    path = out / "products" / "products.db"
    tmp = path.with_name("products.db.tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        # Fixed page size and a rollback journal that is deleted on commit: the file only
        # depends on the rows inserted, so it is byte-identical per seed.
        con.execute("pragma page_size = 4096")
        con.execute("pragma journal_mode = delete")
        con.execute(
            "create table products (product_id integer primary key, name text not null, "
            "category text not null, price real not null, updated_at datetime not null)"
        )
        con.executemany("insert into products values (?, ?, ?, ?, ?)", rows)
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)
    by_cat = np.bincount(cat, minlength=len(PRODUCT_CATEGORIES))
    return (
        {"rows": n, "by_category": {c: int(by_cat[i]) for i, c in enumerate(PRODUCT_CATEGORIES)}},
        price_cents,
    )


def _orders(
    rng: np.random.Generator,
    out: Path,
    n_users: int,
    per_user: int,
    price_cents: np.ndarray,
    max_user_id: int,
) -> dict[str, Any]:
    n = n_users * per_user
    user = rng.integers(1, n_users + 1, n)
    unknown = _take(rng, np.arange(n), defect_count(UNKNOWN_USER_ORDER_RATE, n))
    user[unknown] = max_user_id + 1 + rng.integers(0, max(10, len(unknown)), len(unknown))
    product = rng.integers(1, len(price_cents) + 1, n)
    amount = price_cents[product - 1] * rng.integers(1, 4, n)
    currency = rng.choice(len(CURRENCIES), size=n, p=CURRENCY_P)
    status = rng.choice(len(ORDER_STATUSES), size=n, p=ORDER_STATUS_P)
    created = START + np.sort(rng.integers(0, ORDERS_SPAN, n))
    lo = np.array([d[0] for d in ORDER_UPDATE_DELAY])[status]
    hi = np.array([d[1] for d in ORDER_UPDATE_DELAY])[status]
    updated = created + lo + (rng.random(n) * (hi - lo)).astype(np.int64)

    path = out / "orders" / "orders.json"
    with path.open("wb") as f:
        f.write(b"[\n" if n else b"[")
        for a in range(0, n, BLOCK_LINES):  # blocks keep Arrow's 32-bit string offsets safe
            s = slice(a, min(n, a + BLOCK_LINES))
            lines = pc.binary_join_element_wise(
                '{"order_id": ',
                pa.array(np.arange(a + 1, s.stop + 1)).cast(pa.string()),
                ', "user_id": ',
                pa.array(user[s]).cast(pa.string()),
                ', "product_id": ',
                pa.array(product[s]).cast(pa.string()),
                ', "amount": ',
                _float_text(amount[s]),
                ', "currency": "',
                pa.array(CURRENCIES).take(pa.array(currency[s])),
                '", "status": "',
                pa.array(ORDER_STATUSES).take(pa.array(status[s])),
                '", "created_at": "',
                _iso_arrow(created[s]),
                '", "updated_at": "',
                _iso_arrow(updated[s]),
                '"},\n',
                "",
            )
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
            stop = offsets[len(lines)] - (2 if s.stop == n else 0)  # no comma after the last
            f.write(memoryview(lines.buffers()[2])[offsets[0] : stop])
        f.write(b"\n]\n" if n else b"]\n")
    by_status = np.bincount(status, minlength=len(ORDER_STATUSES))
    return {
        "rows": n,
        "unknown_user": len(unknown),
        "by_status": {s: int(by_status[i]) for i, s in enumerate(ORDER_STATUSES)},
    }


# ---------------------------------------------------------------- entry points


def _clean(out: Path) -> None:
    """Remove what an earlier run generated (e.g. more segments), and nothing else."""
    patterns = {
        "users": "users-*.csv",
        "events": "events-*.jsonl",
        "orders": "orders.json",
        "products": "products.db*",
    }
    for sub, pattern in patterns.items():
        d = out / sub
        d.mkdir(parents=True, exist_ok=True)
        for p in sorted(d.glob(pattern)):
            p.unlink()
    (out / "manifest.json").unlink(missing_ok=True)


def generate(
    out: Path,
    users: int = DEFAULT_USERS,
    seed: int = DEFAULT_SEED,
    events_per_user: int = DEFAULT_EVENTS_PER_USER,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    orders_per_user: int = DEFAULT_ORDERS_PER_USER,
    products: int = DEFAULT_PRODUCTS,
) -> dict[str, Any]:
    """Write the sample files under out and return the manifest (also written as JSON)."""
    if users < 1 or events_per_user < 1 or products < 1 or orders_per_user < 0:
        raise ValueError("users, events_per_user and products must be >= 1, orders >= 0")
    if segment_size < 2:
        raise ValueError("segment_size must be >= 2")
    out = Path(out)
    _clean(out)
    rng_users, rng_events, rng_products, rng_orders = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    users_part = _users(rng_users, out, users)
    max_user_id = users_part.pop("_max_user_id")
    events_part = _events(rng_events, out, users, events_per_user, segment_size)
    products_part, price_cents = _products(rng_products, out, products)
    orders_part = _orders(rng_orders, out, users, orders_per_user, price_cents, max_user_id)
    manifest = {
        "seed": seed,
        "params": {
            "users": users,
            "seed": seed,
            "events_per_user": events_per_user,
            "segment_size": segment_size,
            "orders_per_user": orders_per_user,
            "products": products,
        },
        "users": users_part,
        "events": events_part,
        "orders": orders_part,
        "products": products_part,
    }
    text = json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.generator",
        description="Write deterministic sample data with known defects and a manifest.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--events-per-user", type=int, default=DEFAULT_EVENTS_PER_USER)
    parser.add_argument("--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE)
    parser.add_argument("--orders-per-user", type=int, default=DEFAULT_ORDERS_PER_USER)
    parser.add_argument("--products", type=int, default=DEFAULT_PRODUCTS)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        m = generate(
            args.out,
            users=args.users,
            seed=args.seed,
            events_per_user=args.events_per_user,
            segment_size=args.segment_size,
            orders_per_user=args.orders_per_user,
            products=args.products,
        )
    except (ValueError, OSError) as exc:
        print(f"error: could not write sample data to {args.out}: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote sample data to {args.out}: {m['users']['csv_rows']} user rows, "
        f"{m['events']['lines']} event lines in {len(m['events']['segments'])} segments, "
        f"{m['orders']['rows']} orders, {m['products']['rows']} products "
        f"(seed {args.seed}, {time.perf_counter() - began:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The models run on DuckDB, PostgreSQL and Spark: no engine-only SQL outside
the dispatched macros (`<adapter>__<name>` in macros/), and the comparison the
engine tests rely on really tells equal builds from different ones.

Runs in plain `make test` (no engine needed)."""

from __future__ import annotations

import re

from engine_compare import ROOT, Table, compare

# Syntax that breaks on at least one of the three engines, with what to use instead.
ENGINE_ONLY = {
    r"\bqualify\b": "qualify (use row_number() in a CTE)",
    r"\btry_cast\s*\(": "try_cast (use safe_cast)",
    r"\bgroup\s+by\s+all\b": "group by all (list the columns)",
    r"\bregexp_matches\s*\(": "regexp_matches (use regexp_like)",
    r"\bdate_diff\s*\(": "date_diff (use dbt.datediff)",
    r"\bstrftime\s*\(": "strftime",
    r"\*\s*exclude\b": "* exclude (list the columns)",
    r"::": ":: casts (use cast(x as t))",
    r"~": "~ regex operator (use regexp_like)",
    r"\bdistinct\s+on\b": "distinct on (use row_number())",
    r"\bquantile_cont\s*\(": "quantile_cont (use percentile_cont)",
    r"\bisodow\b": "isodow (use day_of_week)",
    r"\btimezone\s*\(": "timezone() (use to_utc_timestamp)",
    r"\brlike\b": "rlike (use regexp_like)",
    r"\bpercentile\s*\(": "percentile (use percentile_cont)",
}
ADAPTER_PREFIXES = ("duckdb__", "postgres__", "spark__", "default__")
DISPATCHED_MACRO = re.compile(
    r"{%-?\s*macro\s+(?:" + "|".join(ADAPTER_PREFIXES) + r")\w*\s*\(.*?{%-?\s*endmacro\s*-?%}",
    re.DOTALL,
)


def sql_text(source: str) -> str:
    """What reaches the database verbatim: Jinja, comments and string literals removed."""
    text = DISPATCHED_MACRO.sub(" ", source)
    text = re.sub(r"{#.*?#}", " ", text, flags=re.DOTALL)
    text = re.sub(r"{{.*?}}|{%.*?%}", " ", text, flags=re.DOTALL)
    text = re.sub(r"--[^\n]*", " ", text)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


def engine_only_syntax(source: str) -> list[str]:
    text = sql_text(source)
    return [what for pattern, what in ENGINE_ONLY.items() if re.search(pattern, text, re.I)]


def test_no_engine_only_syntax_outside_dispatched_macros() -> None:
    files = sorted(
        [*(ROOT / "models").rglob("*.sql"), *(ROOT / "macros").rglob("*.sql")]
        + sorted((ROOT / "warehouse" / "dbt").rglob("*.sql"))  # the tool's package
    )
    assert len(files) >= 20
    found = {
        str(path.relative_to(ROOT)): hits
        for path in files
        if (hits := engine_only_syntax(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_check_finds_each_construct() -> None:
    bad = """
        select * exclude (a), a::varchar, try_cast(b as int), date_diff('day', x, y),
            strftime(x, '%Y'), regexp_matches(e, 'x'), e ~ 'y', isodow(t), timezone('UTC', t),
            quantile_cont(v, 0.5), e rlike 'z', percentile(v, 0.5)
        from t group by all qualify row_number() over () = 1
        union all select distinct on (a) a from t
    """
    assert len(engine_only_syntax(bad)) == len(ENGINE_ONLY)
    portable = """
        {{ safe_cast('trim(age)', dbt.type_int()) }} -- not try_cast here
        {% macro duckdb__x() %}try_cast(a as int){% endmacro %}
        select 'a::b ~ qualify' as text, {{ 'x' ~ 'y' }} from t
    """
    assert engine_only_syntax(portable) == []


def test_the_comparison_tells_builds_apart() -> None:
    columns = ("user_id", "value", "flag", "name")
    base = Table(columns, [(1, 1.0, True, "a"), (2, 3.0, False, "b")])
    key = "marts.dim_users"

    def against(rows: list[tuple]) -> list[str]:
        return compare({key: base}, {key: Table(columns, rows)})

    assert against([(2, 3.0 * (1 + 1e-10), False, "b"), (1, 1.0, True, "a")]) == []
    assert len(against([(1, 1.0 * (1 + 1e-8), True, "a"), (2, 3.0, False, "b")])) == 1
    assert len(against([(1, 1.0, 1, "a"), (2, 3.0, False, "b")])) == 1
    assert len(against([(1, 1.0, True, "A"), (2, 3.0, False, "b")])) == 1
    assert len(against([(1, 1.0, True, "a")])) == 2
    assert compare({key: base}, {}) != []

"""Lint-time stand-ins for dbt's cross-database macros (`dbt.<name>`).

sqlfluff's jinja templater knows no `dbt` namespace; it loads this module as
`dbt` (pyproject: [tool.sqlfluff.templater.jinja] library_path) so models
render to the SQL dbt-duckdb would produce. Not used by dbt itself.
"""

from __future__ import annotations


def type_string() -> str:
    return "varchar"


def type_bigint() -> str:
    return "bigint"


def type_int() -> str:
    return "integer"


def type_float() -> str:
    return "double"


def type_numeric() -> str:
    return "numeric(28, 6)"


def type_boolean() -> str:
    return "boolean"


def type_timestamp() -> str:
    return "timestamp"


def dateadd(datepart: str, interval: object, from_date_or_timestamp: str) -> str:
    return f"({from_date_or_timestamp} + cast({interval} as bigint) * interval 1 {datepart})"


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def date_trunc(datepart: str, date: str) -> str:
    return f"date_trunc('{datepart}', {date})"


def split_part(string_text: str, delimiter_text: str, part_number: int) -> str:
    return f"split_part({string_text}, {delimiter_text}, {part_number})"


def hash(field: str) -> str:  # noqa: A001 - mirrors dbt.hash
    return f"md5(cast({field} as varchar))"


def safe_cast(field: str, data_type: str) -> str:
    return f"cast({field} as {data_type})"

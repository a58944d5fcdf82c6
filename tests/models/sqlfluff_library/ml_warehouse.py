"""The tool's dbt package (`ml_warehouse.<macro>`) for sqlfluff's jinja templater.

sqlfluff knows no dbt packages; it loads this module as `ml_warehouse` (pyproject:
[tool.sqlfluff.templater.jinja] library_path), and each attribute renders the
package's own macro (warehouse/dbt/macros) as dbt-duckdb would at parse time:
`adapter.dispatch` picks the duckdb__ or default__ version, `execute` is false,
vars are the sample project's. Not used by dbt itself.
"""

from __future__ import annotations

import datetime
import importlib.util
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[3]
MACROS = ROOT / "warehouse" / "dbt" / "macros"
# The dbt stand-ins beside this file (sqlfluff loads them as `dbt`; loaded here by path,
# as `import dbt` would find whichever dbt came first).
_spec = importlib.util.spec_from_file_location("sqlfluff_dbt", Path(__file__).with_name("dbt.py"))
dbt = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(dbt)  # type: ignore[union-attr]
VARS = yaml.safe_load((ROOT / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]


class _Return(Exception):  # noqa: N818 - dbt's `return()` ends a macro with a value
    def __init__(self, value: Any) -> None:
        self.value = value


def _return(value: Any) -> None:
    raise _Return(value)


def _macro(template: jinja2.Template, name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(template.module, name)(*args, **kwargs)
        except _Return as done:
            return done.value

    return call


class _Adapter:
    def dispatch(self, name: str, namespace: str | None = None) -> Any:
        return _MACROS.get(f"duckdb__{name}") or _MACROS[f"default__{name}"]

    def quote(self, identifier: str) -> str:
        return f'"{identifier}"'


_MACROS: dict[str, Any] = {}
_ENV = jinja2.Environment(extensions=["jinja2.ext.do"])
_ENV.globals.update(
    {
        "return": _return,
        "adapter": _Adapter(),
        "dbt": dbt,
        "execute": False,
        "target": {"type": "duckdb", "name": "duckdb", "schema": "main"},
        "var": lambda name, default=None: VARS.get(name, default),
        "env_var": lambda name, default="": default,
        "modules": {"re": re, "datetime": datetime},
        "run_started_at": datetime.datetime(2026, 1, 1),
        "is_incremental": lambda: False,
        "ml_warehouse": _MACROS,
    }
)
for _path in sorted(MACROS.glob("*.sql")):
    _template = _ENV.from_string(_path.read_text(encoding="utf-8"))
    for _name in re.findall(r"\{%-?\s*macro\s+(\w+)\(", _path.read_text(encoding="utf-8")):
        _MACROS[_name] = _macro(_template, _name)
globals().update(_MACROS)

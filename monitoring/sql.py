"""SQL helpers: every identifier the monitor writes into a query goes through `quote`."""

from __future__ import annotations


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes, safe for any name (quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def relation(schema: str, identifier: str) -> str:
    """`"schema"."table"` in the connection's default catalog (the warehouse file)."""
    return f"{quote(schema)}.{quote(identifier)}"

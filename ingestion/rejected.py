"""Rows that cannot be parsed at all are kept here, never dropped silently.

Every source routes such rows to one append-only table, `raw._rejected_rows`,
from inside its own resource (so they land in the same load as the good rows):

    yield rejected_rows("users", "users", [
        {"location": "users-0001.csv:17", "reason": "wrong_field_count", "payload": raw_line},
    ])
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import dlt
import pyarrow as pa

REJECTED_TABLE = "_rejected_rows"

# dlt takes the table's columns from this schema.
_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("location", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.string()),
        pa.field("rejected_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


# dlt's types for _SCHEMA's columns, and the load id dlt adds to Arrow rows: the table as
# dlt would make it, so that dlt's first reject finds it complete.
_DDL = f"""
    create table if not exists {{raw}}.{REJECTED_TABLE} (
        source varchar not null,
        resource varchar not null,
        location varchar not null,
        reason varchar not null,
        payload varchar,
        rejected_at timestamp with time zone not null,
        _dlt_load_id varchar not null
    )
"""


def ensure_rejected_table(con: Any, raw: str) -> None:
    """`raw._rejected_rows` exists from the first run on, empty when nothing was rejected:
    queries and the dbt source over it never fail for its absence."""
    con.execute(f"create schema if not exists {raw}")
    con.execute(_DDL.format(raw=raw))


def rejected_rows(source: str, resource: str, rows: Iterable[dict[str, Any]]) -> Any:
    """Mark rejected rows (dicts with location, reason, payload) for `raw._rejected_rows`.

    dlt adds `_dlt_load_id`, which ties each rejected row to the load it came
    with. Yield the returned item from the resource that found the rows. The hints
    form a table variant, so the resource's own hints (its table, key and write
    disposition) stay as declared for the good rows.
    """
    now = datetime.now(UTC)
    rows = list(rows)
    table = pa.Table.from_pylist(
        [
            {
                "source": source,
                "resource": resource,
                "location": str(r["location"]),
                "reason": str(r["reason"]),
                "payload": r.get("payload"),
                "rejected_at": now,
            }
            for r in rows
        ],
        schema=_SCHEMA,
    )
    return dlt.mark.with_hints(
        table,
        dlt.mark.make_hints(table_name=REJECTED_TABLE, write_disposition="append"),
        create_table_variant=True,
    )


def data_rows(table: Any, **hints: Any) -> Any:
    """Mark a resource's good rows for their own table (hints as for `make_hints`).

    A resource that also yields `rejected_rows` cannot declare its table's hints
    on itself: dlt lets a resource's column hints leak into every table it
    yields to. So the good rows carry their hints as a table variant too.
    """
    return dlt.mark.with_hints(table, dlt.mark.make_hints(**hints), create_table_variant=True)


def keep_on_refresh(pipeline: dlt.Pipeline, schema_name: str) -> None:
    """Before a source's full refresh: dlt must not drop `raw._rejected_rows`.

    dlt's refresh drops every table of the source's schema that has seen data,
    and the rejected rows' table is in the schema of every source that
    rejected something: a refresh of one source would drop all sources'
    rejected rows. Marked unseen, it leaves the schema but stays in the
    warehouse (dlt adds it back on the next reject: its columns are there);
    the source's own earlier rejects go after the load (drop_replaced_rejects).
    """
    if schema_name not in pipeline.schema_names:
        return
    table = pipeline.schemas[schema_name].tables.get(REJECTED_TABLE)
    if table is not None:
        table.setdefault("x-normalizer", {})["seen-data"] = False  # type: ignore[typeddict-item]


def drop_replaced_rejects(pipeline: dlt.Pipeline, source: str, load_ids: list[str]) -> None:
    """After a source's full refresh: delete its rejected rows of the loads before it.

    The refresh read everything again and kept its rejects again, in `load_ids`.
    The Parquet lake has no deletes: there the older copies stay.
    """
    if not load_ids or pipeline.destination.destination_name == "filesystem":
        return
    with pipeline.sql_client() as client:
        present = client.has_dataset() and client.execute_sql(
            "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
            client.dataset_name,
            REJECTED_TABLE,
        )
        if present:
            client.execute_sql(
                f"delete from {client.make_qualified_table_name(REJECTED_TABLE)} "
                f"where source = %s and _dlt_load_id not in ({', '.join(['%s'] * len(load_ids))})",
                source,
                *load_ids,
            )

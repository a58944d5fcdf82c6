"""The dlt pipeline every source loads through (ingestion/destination.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from project_env import loads_with_new_states

from ingestion.destination import (
    PARQUET_DICTIONARY_PAGE_LIMIT,
    make_pipeline,
    prune_load_history,
)


def test_the_parquet_files_dlt_extracts_bound_their_dictionaries(tmp_path: Path) -> None:
    """A column of unique texts gives up its dictionary after 64 KB, not pyarrow's 1 MB."""
    rows = 100_000
    table = pa.table(
        {
            "row_key": [f"users-2026-12-07.csv:{line:09d}" for line in range(rows)],
            "country": ["DE", "FR", "US", "JP"] * (rows // 4),
        }
    )
    pipeline = make_pipeline("dictionary_probe", tmp_path / "warehouse.duckdb")
    pipeline.extract(dlt.resource([table], name="probe"))

    (written,) = Path(pipeline.working_dir).rglob("probe.*.parquet")
    group = pq.ParquetFile(written).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    # each column's dictionary page comes first; its data pages start where it ends
    for name, at_most in (("row_key", PARQUET_DICTIONARY_PAGE_LIMIT), ("country", 100)):
        column = columns[name]
        assert column.has_dictionary_page
        assert column.data_page_offset - column.dictionary_page_offset <= at_most
    assert pq.read_table(written).select(["row_key", "country"]).equals(table)


def test_only_the_newest_loads_keep_their_records_and_states(tmp_path: Path) -> None:
    """Each load leaves dlt's record of it and a copy of the state; the older ones go, the
    warehouse keeps every load and dlt restores the newest state."""
    warehouse = tmp_path / "warehouse.duckdb"
    pipeline = make_pipeline("prune_probe", warehouse)
    loads = loads_with_new_states(pipeline, 4)
    assert len(loads) == 4
    folder = Path(pipeline.working_dir) / "load" / "loaded"
    assert not list(folder.rglob("completed_jobs/*.*"))  # their files went at each load

    def stored() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute(
                "select (select count(*) from raw.probe), (select count(*) from raw._dlt_loads),"
                " list(_dlt_load_id order by _dlt_load_id) from raw._dlt_pipeline_state"
            ).fetchall()

    assert stored() == [(4, 4, loads)]
    prune_load_history(pipeline, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == loads[2:]
    assert stored() == [(4, 4, loads[2:])]
    prune_load_history(pipeline, keep=2)
    assert stored() == [(4, 4, loads[2:])]

    # dlt restores the newest state from the warehouse into a new working folder
    restored = make_pipeline("prune_probe", warehouse)
    shutil.rmtree(restored.working_dir)
    restored = make_pipeline("prune_probe", warehouse)
    restored.sync_destination()
    (source,) = restored.state["sources"].values()
    assert source["resources"]["probe"]["position"] == 3

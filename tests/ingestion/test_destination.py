"""The dlt pipeline every source loads through (ingestion/destination.py)."""

from __future__ import annotations

from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.destination import PARQUET_DICTIONARY_PAGE_LIMIT, make_pipeline


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

"""The dlt pipeline that writes the warehouse's `raw` schema, on whichever destination."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.settings import (
    RAW_DATASET,
    lake_path,
    pipelines_dir,
    postgres_url,
    warehouse_destination,
    warehouse_path,
)

if TYPE_CHECKING:
    import dlt


def make_pipeline(source_name: str, warehouse: Path | None = None) -> dlt.Pipeline:
    """The dlt pipeline that loads one source into `raw` of the warehouse."""
    import dlt  # here, not at the top: the monitor needs only the paths, and dlt is slow to import

    # the module, not dlt.pipeline's function of the same name
    dlt_pipeline = importlib.import_module("dlt.pipeline.pipeline")

    # dlt pickles each run's trace (resolved config values, secrets among them, and error
    # texts) into its working folder beside the warehouse; we read the trace in memory
    # only, so none is written (dlt has no setting for it).
    dlt_pipeline.save_trace = _no_trace

    _bound_parquet_dictionaries()

    # Arrow tables get dlt's load id too (dlt adds it only to dict rows by default), so
    # every raw row can be traced to its entry in raw._dlt_loads, whatever the config says.
    os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"
    # dlt keeps a copy of every file it loaded under its working folder (load/loaded/*/
    # completed_jobs), which nothing reads again: the folder grew by a compressed copy of
    # every row ever loaded (a 10M-event load left 182 MB), and kept rows an erasure
    # removed from the warehouse. dlt deletes them once their load committed; the
    # environment variable set to false keeps them for inspection.
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")

    warehouse = warehouse or warehouse_path()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    kind = warehouse_destination()
    if kind == "duckdb":
        destination = dlt.destinations.duckdb(str(warehouse))
        working_dir = pipelines_dir(warehouse)
    else:
        destination = _scale_out_destination(kind)
        working_dir = pipelines_dir(warehouse).with_name(f"{warehouse.stem}-{kind}")
    return dlt.pipeline(
        pipeline_name=f"ml_warehouse_{source_name}",
        destination=destination,
        dataset_name=RAW_DATASET,
        pipelines_dir=str(working_dir),
    )


# dlt keeps a history of every load: in its working folder a record of the load
# (load/loaded/<load id>: the package's schema, state and job list, ~50 KB once its files
# are deleted), and in raw._dlt_pipeline_state the pipeline's whole state again (171 KB a
# load for an events source of 2,020 segment files). Nothing reads but the newest state,
# so a run every few minutes, let alone --follow's batch a second, would pile up gigabytes.
# The newest few loads keep both (dlt's own `dlt pipeline <name> info` reads the records);
# raw._dlt_loads keeps every load.
KEEP_LOADS = 5


def prune_load_history(pipeline: dlt.Pipeline, keep: int = KEEP_LOADS) -> None:
    """Delete the pipeline's load records and stored states but those of its newest `keep`
    loads (the states of its newest `keep` completed loads: dlt restores the newest)."""
    loaded = sorted(pipeline.list_completed_load_packages(), key=float)  # load ids: epochs
    storage = pipeline._get_load_storage()  # noqa: SLF001 - dlt has no public delete
    for load_id in loaded[: max(len(loaded) - keep, 0)]:
        storage.delete_loaded_package(load_id)
    if warehouse_destination() == "filesystem" or not pipeline.default_schema_name:
        return  # a lake's state files are not rows to delete
    schema = pipeline.default_schema
    with pipeline.sql_client() as client:
        states = client.make_qualified_table_name(schema.state_table_name)
        loads = client.make_qualified_table_name(schema.loads_table_name)
        client.execute_sql(
            f"delete from {states} where pipeline_name = %s and _dlt_load_id < ("
            f" select min(load_id) from (select s._dlt_load_id as load_id from {states} s"
            f" join {loads} l on l.load_id = s._dlt_load_id"
            "  where s.pipeline_name = %s and l.status = 0"
            f"  order by s._dlt_load_id desc limit {int(keep)}) newest)",
            pipeline.pipeline_name,
            pipeline.pipeline_name,
        )


# dlt writes every Arrow table it extracts to Parquet with pyarrow's defaults and has no
# setting for this one: each column of each row group is dictionary-encoded until its
# dictionary passes 1 MB. A column of unique values (ids, `_row_key`, timestamps) then
# hashes ~50k values per row group for nothing; with 64 KB it gives up after ~3k, and a
# column of few values (a country, a category, a file name) still fits. Writes of the
# users' rows take 0.68x the time: loading 3.5M users rows 0.95x, 10M events 0.99x (A/B).
PARQUET_DICTIONARY_PAGE_LIMIT = 64 * 1024


def _bound_parquet_dictionaries() -> None:
    """Every Parquet writer of this process (dlt's) bounds its dictionaries; idempotent."""
    import pyarrow.parquet as pq

    if getattr(pq.ParquetWriter, "bounds_dictionaries", False):
        return

    class ParquetWriter(pq.ParquetWriter):
        bounds_dictionaries = True

        def __init__(self, where: Any, schema: Any, **options: Any) -> None:
            options.setdefault("dictionary_pagesize_limit", PARQUET_DICTIONARY_PAGE_LIMIT)
            super().__init__(where, schema, **options)

    pq.ParquetWriter = ParquetWriter  # dlt looks it up on the module at each file


def _no_trace(trace_dir: str, trace: Any) -> None:
    """Instead of dlt's save_trace: remove a trace an earlier version left, write none."""
    Path(trace_dir, "trace.pickle").unlink(missing_ok=True)


def _scale_out_destination(kind: str) -> Any:
    import dlt

    if kind == "postgres":
        return dlt.destinations.postgres(credentials=postgres_url())
    lake = lake_path().resolve()
    lake.mkdir(parents=True, exist_ok=True)
    # Parquet, not dlt's default JSONL, so Spark reads raw as external tables.
    return dlt.destinations.filesystem(
        bucket_url=lake.as_uri(), preferred_loader_file_format="parquet"
    )

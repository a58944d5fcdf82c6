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

    # Arrow tables get dlt's load id too (dlt adds it only to dict rows by default), so
    # every raw row can be traced to its entry in raw._dlt_loads, whatever the config says.
    os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"

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

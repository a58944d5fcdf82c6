"""Where the warehouse lives, and the dlt pipeline that writes its `raw` schema.

Every command (ingestion, dbt's profile, monitor, pipeline) reads the same
`WAREHOUSE_PATH`, so one variable moves the whole project to another file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dlt

DEFAULT_WAREHOUSE = "data/warehouse.duckdb"
RAW_DATASET = "raw"


def warehouse_path() -> Path:
    """The working warehouse file (`WAREHOUSE_PATH`, default data/warehouse.duckdb)."""
    return Path(os.environ.get("WAREHOUSE_PATH", DEFAULT_WAREHOUSE))


def pipelines_dir(warehouse: Path | None = None) -> Path:
    """dlt's working folder for one warehouse, kept beside it.

    Pipeline state and pending load packages belong to the warehouse they load
    into; keeping them next to it (not in ~/.dlt) means two warehouses never
    share state.
    """
    warehouse = warehouse or warehouse_path()
    return warehouse.parent / ".dlt-pipelines" / warehouse.stem


def make_pipeline(source_name: str, warehouse: Path | None = None) -> dlt.Pipeline:
    """The dlt pipeline that loads one source into `raw` of the warehouse."""
    import dlt  # here, not at the top: the monitor needs only the paths, and dlt is slow to import

    warehouse = warehouse or warehouse_path()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return dlt.pipeline(
        pipeline_name=f"ml_warehouse_{source_name}",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name=RAW_DATASET,
        pipelines_dir=str(pipelines_dir(warehouse)),
    )

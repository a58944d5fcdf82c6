"""The pipeline as a Dagster code location (optional extra `.[dagster]`).

`dg dev -m orchestration.definitions` shows the configured project as
assets: one per declared source (loaded by `python -m ingestion`), the dbt
models (tests as asset checks), the quality monitor as checks on the marts,
and the published `analytics.duckdb`. A Dagster run is a pipeline run: it
holds the warehouse lock and writes the same ledger and audit log.
"""

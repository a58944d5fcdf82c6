"""The read-only feature API over the published `analytics.duckdb` (`python -m pipeline serve`).

An optional part: `pip install "ml-warehouse[serving]"` brings FastAPI and uvicorn.
"""

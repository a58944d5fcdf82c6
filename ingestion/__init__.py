"""dlt ingestion of the four raw sources into the warehouse's `raw` schema."""

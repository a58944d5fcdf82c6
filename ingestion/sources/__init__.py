"""One package per raw source: users (CSV), orders (REST API), events (stream), products (SQL)."""

"""Fixtures of the ingestion tests: the orders file and the demo API (tests/orders_fixtures.py)."""

from orders_fixtures import demo_api, orders_data, orders_file, start_demo_api

__all__ = ["demo_api", "orders_data", "orders_file", "start_demo_api"]

"""Deterministic sample data with known defects, and the demo orders API."""

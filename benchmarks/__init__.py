"""Reproducible benchmarks that print a markdown table (python benchmarks/run.py)."""

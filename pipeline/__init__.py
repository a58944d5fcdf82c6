"""Orchestration: python -m pipeline."""

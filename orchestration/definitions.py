"""The code location Dagster loads: `dagster dev -m orchestration.definitions`."""

from .location import build_definitions

defs = build_definitions()

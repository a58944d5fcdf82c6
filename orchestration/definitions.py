"""The code location Dagster loads: `dg dev -m orchestration.definitions`."""

from .location import build_definitions

defs = build_definitions()

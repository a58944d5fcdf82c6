"""Post-run quality monitor for the warehouse: python -m monitoring."""

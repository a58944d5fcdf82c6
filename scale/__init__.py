"""Scale-out helpers: run the same project against PostgreSQL and Spark (docs/scale-out.md)."""

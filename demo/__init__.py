"""The sample domain (users, orders, events, products): an example, never part of the product.

    python -m demo              sample data + demo orders API + `python -m pipeline run`
    python -m demo.generator    the sample files only (deterministic, known defects)
    python -m demo.api          the demo orders REST API, with fault injection
    python -m demo.produce      sample events into a Redis Stream at a set rate

The product packages never import this one (import-linter checks it), and the
built wheel does not contain it.
"""

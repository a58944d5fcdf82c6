"""Products: one table of a SQL database (any SQLAlchemy URL) into raw.products.

Incremental on `updated_at` and merged on `product_id`, so re-running loads only rows
changed since the last run and never duplicates a product.
"""

from __future__ import annotations

import dlt
from dlt.sources import DltResource
from dlt.sources.sql_database import sql_table
from sqlalchemy.exc import NoSuchTableError

from .helpers import RunRecorder, adapt_type, check_credentials, contract_for, missing_table_error
from .settings import BACKEND, CHUNK_SIZE, CURSOR_COLUMN, PRIMARY_KEY, RESOURCE_NAME, SOURCE_NAME


@dlt.source(name=SOURCE_NAME)
def products_source(
    credentials: str = dlt.config.value,
    table: str = dlt.config.value,
    schema_contract: str = dlt.config.value,
) -> DltResource:
    """The `products` resource reading `table` from the database at `credentials`.

    `credentials` is a config value (not a secret) so the committed SQLite default in
    .dlt/config.toml resolves; a URL with a password belongs in SOURCES__PRODUCTS__CREDENTIALS
    or .dlt/secrets.toml.
    """
    contract = contract_for(schema_contract)
    recorder = RunRecorder()
    try:
        resource = sql_table(
            credentials=check_credentials(credentials),
            table=table,
            backend=BACKEND,
            chunk_size=CHUNK_SIZE,
            reflection_level="full",
            type_adapter_callback=adapt_type,
            incremental=dlt.sources.incremental(CURSOR_COLUMN),
            write_disposition="merge",
            primary_key=PRIMARY_KEY,
            table_loader_class=recorder.loader_class(),
        )
    except NoSuchTableError:
        raise missing_table_error(table) from None
    resource.add_step(recorder.step())
    resource.apply_hints(table_name=RESOURCE_NAME, schema_contract=contract)
    return resource.with_name(RESOURCE_NAME)

"""dlt source for the events stream: JSONL segments → raw.events (+ raw._rejected_rows)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from .helpers import FileSegments, contract_mode, current_pipeline, inbox_dir, read_events
from .settings import RESOURCE_NAME, SOURCE_NAME


@dlt.source(name=SOURCE_NAME)
def events_source(
    inbox: str = dlt.config.value,
    schema_contract: str = dlt.config.value,
) -> DltResource:
    """Stream segments `<inbox>/*.jsonl`, each line consumed once, in segment order."""
    return events(inbox).apply_hints(schema_contract=contract_mode(schema_contract))


@dlt.resource(name=RESOURCE_NAME)
def events(inbox: str) -> Iterator[Any]:
    """New events since the stored position; re-sent event_ids never load twice.

    raw.events is an insert-only merge on event_id (declared in `events_item`:
    the table hints sit on the chunks, see there). The resource also drops
    repeats before yielding, which is how it counts them.
    """
    yield from read_events(
        FileSegments(inbox_dir(inbox)),
        dlt.current.resource_state(),
        datetime.now(UTC),
        current_pipeline(),
    )

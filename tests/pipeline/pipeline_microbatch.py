"""A copy of the dbt project whose events model is microbatch (what backfill needs).

The repository's int_events_enriched is `merge` today; backfill uses dbt's
microbatch strategy. This writes the project into a folder with that one model
switched to microbatch (event_time occurred_at, daily batches, 3 days lookback)
and `event_time` declared on its input, so backfill is tested on the real marts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EVENTS_MODEL = """\
{{
    config(
        materialized='incremental',
        incremental_strategy='microbatch',
        event_time='occurred_at',
        batch_size='day',
        begin='2026-01-01',
        lookback=3,
        on_schema_change='append_new_columns',
    )
}}

with

events as (

    select * from {{ ref('stg_events__events') }}
    where event_status = 'valid'

),

final as (

    select
        event_id,
        user_id,
        category,
        value,
        has_non_numeric_value,
        occurred_at,
        {{ hour_of_day('occurred_at') }} as event_hour,
        {{ day_of_week('occurred_at') }} as event_day_of_week,
        loaded_at

    from events

)

select * from final
"""


def microbatch_project(dest: Path) -> Path:
    """Copy the dbt project to dest with int_events_enriched as a microbatch model."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "dbt_project.yml", dest / "dbt_project.yml")
    for folder in ("models", "macros", "seeds", "tests/dbt"):
        shutil.copytree(ROOT / folder, dest / folder)
    (dest / "models/intermediate/int_events_enriched.sql").write_text(EVENTS_MODEL)
    staging = dest / "models/staging/events/stg_events__events.sql"
    staging.write_text("{{ config(event_time='occurred_at') }}\n" + staging.read_text())
    return dest

-- Valid events with their row-level features. A view: stg_events__events is
-- the incremental table that keeps every event classified; a table here would
-- copy every valid event again on each run.
{{ config(materialized='view') }}

with

events as (

    select * from {{ ref('stg_events__events') }}
    where event_status = 'valid'

),

final as (

    select
        -- ids
        event_id,
        user_id,

        -- attributes
        category,
        value,
        has_non_numeric_value,

        -- timestamps and their features
        occurred_at,
        {{ ml_warehouse.hour_of_day('occurred_at') }} as event_hour,
        {{ ml_warehouse.day_of_week('occurred_at') }} as event_day_of_week,

        -- lineage
        loaded_at

    from events

)

select * from final

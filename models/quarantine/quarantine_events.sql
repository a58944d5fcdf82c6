-- Raw events kept out of fct_events, with the reason (missing_key,
-- invalid_timestamp or duplicate) and the values as sent, joined back from raw
-- by segment, line and loaded_at (stg_events__events keeps only typed values).
with

events as (

    select * from {{ ref('stg_events__events') }}
    where event_status <> 'valid'

),

raw_events as (

    select * from {{ source('events', 'events') }}

),

final as (

    select
        events.event_status as quarantine_reason,

        -- lineage
        events.segment,
        events.segment_line,

        -- values as sent
        events.event_id,
        raw_events.user_id,
        events.category,
        raw_events.value,
        raw_events.occurred_at,
        events.loaded_at

    from events
    left join raw_events
        on
            events.segment = raw_events._segment
            and events.segment_line = raw_events._line
            and events.loaded_at = {{ ml_warehouse.to_utc_timestamp('raw_events._loaded_at', safe=false) }}

)

select * from final

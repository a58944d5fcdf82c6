-- Raw events kept out of fct_events, with the reason: missing_key,
-- invalid_timestamp or duplicate.
with

events as (

    select * from {{ ref('stg_events__events') }}

),

final as (

    select
        event_status as quarantine_reason,

        -- lineage
        segment,
        segment_line,

        -- values as sent
        event_id,
        user_id_raw as user_id,
        category,
        value_raw as value,
        occurred_at_raw as occurred_at,
        loaded_at

    from events
    where event_status <> 'valid'

)

select * from final

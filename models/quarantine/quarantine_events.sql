{#
    Raw events kept out of fct_events, with the reason (missing_key,
    invalid_timestamp or duplicate) and the values as sent, joined back from raw
    by segment, line and loaded_at (stg_events__events keeps only typed values).

    Incremental: it holds exactly the staging rows that are not valid, under
    their status. The pre-hook deletes the rows staging no longer holds under
    that status (a backfill re-classified them, a user was erased); the run adds
    the not-valid staging rows it does not hold: the new loads' and, when an
    event is sent again, the stored copy it turns into a duplicate. Only those
    few are joined back to raw, and the join lets the raw scan skip the row
    groups of other loads.
#}
{{
    config(
        materialized=ml_warehouse.merge_materialization(),
        incremental_strategy='append',
        pre_hook="{{ quarantine_events_drop_stale(this) }}",
    )
}}

with

events as (

    select * from {{ ref('stg_events__events') }}
    where event_status <> 'valid'

),

{% if is_incremental() %}
    not_held as (

        select * from events
        where not exists (
            select 1 from {{ this }} as held
            where
                held.segment = events.segment
                and held.segment_line = events.segment_line
                and held.loaded_at = events.loaded_at
        )

    ),
{% else %}
    not_held as (

        select * from events

    ),
{% endif %}

raw_events as (

    select * from {{ source('events', 'events') }}

),

final as (

    select
        not_held.event_status as quarantine_reason,

        -- lineage
        not_held.segment,
        not_held.segment_line,

        -- values as sent
        not_held.event_id,
        raw_events.user_id,
        not_held.category,
        raw_events.value,
        raw_events.occurred_at,
        not_held.loaded_at

    from not_held
    left join raw_events
        on
            not_held.segment = raw_events._segment
            and not_held.segment_line = raw_events._line
            and {{ ml_warehouse.raw_loaded_at_is('raw_events._loaded_at', 'not_held.loaded_at') }}

)

select * from final

{#
    The one incremental model: valid events with their row-level features,
    merged on event_id. An incremental run takes every event loaded since the
    last run (late events included, whatever their occurred_at) plus the last
    `events_lookback_days` of occurred_at, so re-processing is bounded and
    idempotent; it ranks only the copies of those event_ids to find the one
    that counts (a re-sent event's newest copy replaces the row). Aggregates over all events (category_stats, the per-category
    columns of fct_events) are rebuilt downstream from this table.
    Tagged `backfill`: with the vars backfill_start/backfill_end it re-processes
    exactly that occurred_at range instead (macros/backfill.sql).
#}
{{
    config(
        materialized=merge_materialization(),
        incremental_strategy='merge',
        unique_key='event_id',
        on_schema_change='append_new_columns',
        tags=['backfill'],
        pre_hook="{{ backfill_delete(this, 'occurred_at') }}",
    )
}}
{%- set lookback_days = var('events_lookback_days') | int %}

with

{% if is_incremental() and not is_backfill() %}
    -- Of every event loaded since the last run or in the lookback window, the
    -- copy that counts (macros/events.sql). Only the copies of those event_ids
    -- are ranked, on the few columns ranking needs, not every raw event with
    -- every cast: reading the staging view without its event_status skips its
    -- ranking. One import per use: an import used twice is computed whole.
    processed as (

        select
            max(loaded_at) as max_loaded_at,
            {{ dbt.dateadd('day', -1 * lookback_days, 'max(occurred_at)') }} as lookback_start

        from {{ this }}

    ),

    recent_copies as (

        select * from {{ ref('stg_events__events') }}

    ),

    all_copies as (

        select * from {{ ref('stg_events__events') }}

    ),

    recent as (

        select
            recent_copies.event_id,
            recent_copies.user_id,
            recent_copies.category,
            recent_copies.value,
            recent_copies.has_non_numeric_value,
            recent_copies.occurred_at,
            recent_copies.segment,
            recent_copies.segment_line,
            recent_copies.loaded_at

        from recent_copies
        cross join processed
        -- a copy merged by an earlier run (the last load is read again in
        -- case more of it arrived) has nothing new: merging it again would
        -- rewrite every row of that load
        left join {{ this }} as merged
            on
                recent_copies.event_id = merged.event_id
                and recent_copies.loaded_at = merged.loaded_at
        where
            merged.event_id is null
            and (
                processed.max_loaded_at is null
                or recent_copies.loaded_at >= processed.max_loaded_at
                or recent_copies.occurred_at >= processed.lookback_start
            )

    ),

    ranked as (

        select
            all_copies.event_id,
            all_copies.occurred_at,
            all_copies.segment,
            all_copies.segment_line,
            all_copies.loaded_at,
            {{ event_copy_number() }} as copy_number

        from all_copies
        where all_copies.event_id in (select recent.event_id from recent)

    ),

    counted as (

        select
            event_id,
            segment,
            segment_line,
            loaded_at

        from ranked
        where {{ event_status() }} = 'valid'

    ),

    to_process as (

        select recent.*

        from recent
        inner join counted
            on
                recent.event_id = counted.event_id
                and recent.segment = counted.segment
                and recent.segment_line = counted.segment_line
                and recent.loaded_at = counted.loaded_at

    ),
{% else %}
    -- a full build, or a backfill of exactly the requested occurred_at range
    -- (macros/backfill.sql)
    events as (

        select * from {{ ref('stg_events__events') }}

    ),

    to_process as (

        select *

        from events
        where
            event_status = 'valid'
            {{- ' and ' ~ backfill_range_filter('occurred_at') if is_incremental() }}

    ),
{% endif %}

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
        {{ hour_of_day('occurred_at') }} as event_hour,
        {{ day_of_week('occurred_at') }} as event_day_of_week,

        -- lineage
        loaded_at

    from to_process

)

select * from final

{#
    The one incremental model: valid events with their row-level features,
    merged on event_id. An incremental run takes every event loaded since the
    last run (late events included, whatever their occurred_at) plus the last
    `events_lookback_days` of occurred_at, so re-processing is bounded and
    idempotent. Aggregates over all events (category_stats, the per-category
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

events as (

    select * from {{ ref('stg_events__events') }}

),

{% if is_incremental() %}
    processed as (

        select
            max(loaded_at) as max_loaded_at,
            {{ dbt.dateadd('day', -1 * lookback_days, 'max(occurred_at)') }} as lookback_start

        from {{ this }}

    ),
{% endif %}

to_process as (

    select events.*

    from events
    {% if is_incremental() %}
        cross join processed
        where
            events.event_status = 'valid'
            {% if is_backfill() %}
                and {{ backfill_range_filter('events.occurred_at') }}
            {% else %}
                and (
                    processed.max_loaded_at is null
                    or events.loaded_at >= processed.max_loaded_at
                    or events.occurred_at >= processed.lookback_start
                )
            {% endif %}
    {% else %}
        where events.event_status = 'valid'
    {% endif %}

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
        {{ hour_of_day('occurred_at') }} as event_hour,
        {{ day_of_week('occurred_at') }} as event_day_of_week,

        -- lineage
        loaded_at

    from to_process

)

select * from final

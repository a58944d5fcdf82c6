-- One row per valid event, with the statistics of its category. The events
-- come from int_events_enriched; the per-category columns are joined from
-- category_stats, which always covers all events, so they are correct after an
-- incremental run. A view: those columns change on every row whenever one event
-- arrives, so a table would be rewritten whole on every run, while the join to
-- five category rows costs little per read. Published analytics.duckdb holds it
-- as a table.
{{ config(materialized='view') }}

with

events as (

    select * from {{ ref('int_events_enriched') }}

),

category_stats as (

    select * from {{ ref('category_stats') }}

),

final as (

    select
        -- ids
        events.event_id,
        events.user_id,

        -- attributes
        events.category,
        events.value,

        -- timestamps and their features
        events.occurred_at,
        events.event_hour,
        events.event_day_of_week,

        -- category statistics
        {{ ml_warehouse.is_outlier(
            'events.value', 'category_stats.value_lower_bound', 'category_stats.value_upper_bound'
        ) }} as is_value_outlier,
        category_stats.value_mean as category_value_mean,
        category_stats.value_std as category_value_std,
        category_stats.event_count as category_event_count,

        -- lineage: a scoped check reads the new rows by it (pushed down to the staging scan)
        events.loaded_at

    from events
    left join category_stats
        on events.category = category_stats.category

)

select * from final

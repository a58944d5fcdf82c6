{#
    Every raw event, cast (text as sent -> typed) and classified: rows with no
    event_id, an unparsable occurred_at or a repeated event_id are marked for
    quarantine; everything else is 'valid'.

    Incremental (merge on the raw row: segment, line, loaded_at), because every
    run would otherwise cast and rank every raw event again. Raw only grows
    (ingestion's insert-only merge), so a run takes the rows loaded since the
    newest one this table holds (macro events_watermark) and ranks them with the
    stored copies of the same event_ids: a re-sent event's new copy counts, the
    stored one becomes a duplicate. Tagged `backfill`: with the vars
    backfill_start/backfill_end it re-processes exactly that occurred_at range
    instead (ml_warehouse's backfill.sql).
#}
{{
    config(
        materialized=ml_warehouse.merge_materialization(),
        incremental_strategy='merge',
        unique_key=['segment', 'segment_line', 'loaded_at'],
        on_schema_change='append_new_columns',
        tags=['backfill'],
        pre_hook="{{ ml_warehouse.backfill_delete(this, 'occurred_at') }}",
    )
}}
{%- set new_rows_only = is_incremental() and not ml_warehouse.is_backfill() %}
{%- set watermark = events_watermark(source('events', 'events')) if new_rows_only else none %}
{%- set raw_loaded_at = ml_warehouse.to_utc_timestamp('_loaded_at', safe=false) %}

with

source as (

    select * from {{ source('events', 'events') }}
    {%- if watermark is not none %}
        where {{ raw_loaded_at }} {{ watermark.operator }} {{ watermark.literal }}
    {%- endif %}

),

renamed as (

    select
        -- ids
        nullif(trim(event_id), '') as event_id,
        {{ ml_warehouse.safe_cast('trim(user_id)', dbt.type_bigint()) }} as user_id,

        -- attributes
        nullif(lower(trim(category)), '') as category,
        {{ ml_warehouse.safe_cast('trim(value)', ml_warehouse.type_double()) }} as value,
        value as value_raw,

        -- timestamps (UTC)
        {{ ml_warehouse.to_utc_timestamp("nullif(trim(occurred_at), '')") }} as occurred_at,

        -- lineage
        _segment as segment,
        _line as segment_line,
        {{ raw_loaded_at }} as loaded_at

    from source

),

-- The values as sent stay in raw: quarantine_events joins them back by
-- segment, line and loaded_at, for the few rows it holds.
new_copies as (

    select
        event_id,
        user_id,
        category,
        value,
        coalesce(value is null and value_raw is not null, false) as has_non_numeric_value,
        occurred_at,
        segment,
        segment_line,
        loaded_at

    from renamed

),

{% if new_rows_only %}
    -- the copies earlier runs stored of the event_ids the new rows carry, but
    -- not those read again from raw (new copies already)
    stored as (

        select * from {{ this }}
        {%- if watermark is not none %}
            where not (loaded_at {{ watermark.operator }} {{ watermark.literal }})
        {%- endif %}

    ),

    stored_copies as (

        select
            event_id,
            user_id,
            category,
            value,
            has_non_numeric_value,
            occurred_at,
            segment,
            segment_line,
            loaded_at

        from stored
        where event_id in (select new_copies.event_id from new_copies)

    ),

    copies as (

        select * from new_copies
        union all
        select * from stored_copies

    ),
{% else %}
    copies as (

        select * from new_copies

    ),
{% endif %}

ranked as (

    select
        *,
        {{ event_copy_number() }} as copy_number

    from copies

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

        -- timestamps
        occurred_at,

        -- classification
        {{ event_status() }} as event_status,

        -- lineage
        segment,
        segment_line,
        loaded_at

    from ranked

)

select * from final
{%- if is_incremental() and ml_warehouse.is_backfill() %}
    -- a backfill: exactly the requested occurred_at range, ranked over every copy
    where {{ ml_warehouse.backfill_range_filter('occurred_at') }}
{%- endif %}

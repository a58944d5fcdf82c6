{#
    How a raw event is classified (stg_events__events: a full build ranks every
    raw event, an incremental run the new rows with the stored copies of their
    event_ids). Of the copies of an event_id, the newest load's counts (then
    the latest segment and line); the others are duplicates.
#}

{% macro event_copy_number() -%}
    row_number() over (
        partition by event_id
        order by loaded_at desc, segment desc, segment_line desc
    )
{%- endmacro %}


{% macro event_status(copy_number='copy_number') -%}
    case
        when event_id is null then 'missing_key'
        when occurred_at is null then 'invalid_timestamp'
        when {{ copy_number }} > 1 then 'duplicate'
        else 'valid'
    end
{%- endmacro %}


{#
    Where an incremental run of stg_events__events (one row per raw event)
    starts: the newest loaded_at it holds, as a literal, so the filter on the
    raw table is pushed into its scan and skips the row groups of earlier loads
    (a subquery in the filter reads and casts every raw row first). Rows of that
    instant are read again (inclusive) when raw has more of them than the model:
    a load that was still arriving at the last build. none when the model is
    empty. Returns {'literal': SQL timestamp, 'operator': '>' or '>='}.
#}
{% macro events_watermark(raw_relation) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set newest = run_query('select max(loaded_at) from ' ~ this).columns[0].values()[0] -%}
    {%- if newest is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set literal = "cast('" ~ newest.isoformat(sep=' ') ~ "' as " ~ dbt.type_timestamp() ~ ")" -%}
    {%- set counts -%}
        select
            (select count(*) from {{ raw_relation }}
             where {{ ml_warehouse.to_utc_timestamp('_loaded_at', safe=false) }} = {{ literal }}) as raw_rows,
            (select count(*) from {{ this }} where loaded_at = {{ literal }}) as model_rows
    {%- endset -%}
    {%- set row = run_query(counts).rows[0] -%}
    {{ return({'literal': literal, 'operator': '>=' if row[0] != row[1] else '>'}) }}
{%- endmacro %}


{#
    quarantine_events' pre-hook on an incremental run: delete the rows that
    stg_events__events no longer holds under the same status (a backfill
    re-classified them, forget erased them); the run adds them again under
    their new status if they are still not valid.
#}
{% macro quarantine_events_drop_stale(relation) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }} as held
        where not exists (
            select 1 from {{ ref('stg_events__events') }} as events
            where
                events.segment = held.segment
                and events.segment_line = held.segment_line
                and events.loaded_at = held.loaded_at
                and events.event_status = held.quarantine_reason
        )
    {%- endif -%}
{%- endmacro %}

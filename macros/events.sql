{#
    How a raw event is classified, in one place for stg_events__events (over
    every raw event) and int_events_enriched (whose incremental runs rank only
    the copies of the event_ids they touch instead of every event again).
    Of the copies of an event_id, the newest load's counts (then the latest
    segment and line); the others are duplicates.
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

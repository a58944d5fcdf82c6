{#
    Backfill of an event-time range (`python -m pipeline backfill`). With the
    vars backfill_start and backfill_end (UTC timestamps, end exclusive) an
    incremental model tagged `backfill` re-processes exactly [start, end): its
    pre-hook `backfill_delete` removes the range, its incremental filter
    `backfill_range_filter` selects the range again, in one transaction.

    Why not dbt's microbatch: dbt-duckdb 1.11 refuses a unique_key with it, and
    a plain microbatch run takes its lookback from the wall clock, so events
    loaded late for old days would never be picked up by a normal run.
#}

{% macro backfill_range() -%}
    {%- set start, end = var('backfill_start', none), var('backfill_end', none) -%}
    {%- if not (start and end) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set pattern = '\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?' -%}
    {%- for value in [start, end] -%}
        {%- if not modules.re.fullmatch(pattern, value | string) -%}
            {{ exceptions.raise_compiler_error("backfill_start/backfill_end must be timestamps like 2026-01-31T00:00:00, got " ~ value) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return([start | string | replace('T', ' '), end | string | replace('T', ' ')]) }}
{%- endmacro %}


{# "true" (truthy) when a backfill range is given, else "" (falsy). #}
{% macro is_backfill() -%}
    {{- 'true' if ml_warehouse.backfill_range() is not none else '' -}}
{%- endmacro %}


{% macro backfill_range_filter(column) -%}
    {%- set range = ml_warehouse.backfill_range() -%}
    {{ column }} >= cast('{{ range[0] }}' as {{ dbt.type_timestamp() }})
    and {{ column }} < cast('{{ range[1] }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}


{% macro backfill_delete(relation, column) -%}
    {%- if is_incremental() and ml_warehouse.backfill_range() is not none -%}
        delete from {{ relation }} where {{ ml_warehouse.backfill_range_filter(column) }}
    {%- endif -%}
{%- endmacro %}

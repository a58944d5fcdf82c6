-- sqlfluff:indentation:template_blocks_indent:false
{#
    duplicate_rate: (rows - distinct keys) / rows, the key being the column
    (column-level test), `columns` (one or more), or else the whole row (all
    columns but `_dlt_*` and meta `monitor: false`). A one-column key ignores
    nulls (count(key) - count(distinct key)); a composite key or whole row
    counts nulls as equal. Errors when the rate is strictly above `threshold`
    (default: quality_threshold('duplicate_rate_error')). One summary row;
    `failures` is the number of duplicates when over the threshold, else 0.
    An empty table has no rate and passes.
#}
{% test duplicate_rate(model, column_name=none, columns=none, threshold=none) %}
{{ config(severity='error', fail_calc='coalesce(max(failures), 0)') }}
{%- set limit = threshold if threshold is not none else ml_warehouse.quality_threshold('duplicate_rate_error', model, column_name) -%}
{%- if column_name is not none -%}
    {%- set key = [column_name] -%}
{%- elif columns -%}
    {%- set key = [columns] if columns is string else columns -%}
{%- else -%}
    {%- set key = [] -%}
    {%- for name in ml_warehouse.quality_columns(model) -%}
        {%- do key.append(adapter.quote(name)) -%}
    {%- endfor -%}
{%- endif -%}

with

{% if key | length == 1 -%}
counted as (

    select
        count(*) as row_count,
        count({{ key[0] }}) - count(distinct {{ key[0] }}) as duplicate_count

    from {{ model }}

),
{%- else -%}
distinct_keys as (

    select distinct {{ key | join(', ') if key else '1 as no_columns' }}
    from {{ model }}

),

counted as (

    select
        (select count(*) from {{ model }}) as row_count,
        (select count(*) from {{ model }}) - (select count(*) from distinct_keys) as duplicate_count

),
{%- endif %}

rated as (

    select
        row_count,
        duplicate_count,
        case
            when row_count > 0 then cast(duplicate_count as {{ ml_warehouse.type_double() }}) / row_count
        end as duplicate_rate,
        {{ ml_warehouse.quality_literal(limit) }} as threshold

    from counted

)

select
    row_count,
    duplicate_count,
    duplicate_rate,
    threshold,
    case when duplicate_rate > threshold then duplicate_count else 0 end as failures

from rated

{% endtest %}

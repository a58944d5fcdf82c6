-- sqlfluff:indentation:template_blocks_indent:false
{#
    missing_rate: share of nulls in a column (column-level test) or in every
    cell of the model (model-level test: all columns but `_dlt_*` and those
    with meta `monitor: false`). Warns when the rate is strictly above
    `threshold` (default: quality_threshold('missing_rate_warn')). One summary
    row; `failures` is the number of missing values when over the threshold,
    else 0. An empty table has no rate and passes.
#}
{% test missing_rate(model, column_name=none, threshold=none) %}
{{ config(severity='warn', fail_calc='coalesce(max(failures), 0)') }}
{%- set limit = threshold if threshold is not none else ml_warehouse.quality_threshold('missing_rate_warn', model, column_name) -%}
{%- if column_name is not none -%}
    {%- set columns = [column_name] -%}
{%- else -%}
    {%- set columns = [] -%}
    {%- for name in ml_warehouse.quality_columns(model) -%}
        {%- do columns.append(adapter.quote(name)) -%}
    {%- endfor -%}
{%- endif -%}
{%- set missing_terms = [] -%}
{%- for column in columns -%}
    {%- do missing_terms.append('(count(*) - count(' ~ column ~ '))') -%}
{%- endfor -%}

with

counted as (

    select
        count(*) as row_count,
        {{ missing_terms | join(' + ') if missing_terms else '0' }} as missing_count

    from {{ model }}

),

rated as (

    select
        row_count,
        row_count * {{ columns | length }} as cell_count,
        missing_count,
        case
            when row_count > 0 and {{ columns | length }} > 0
                then cast(missing_count as {{ ml_warehouse.type_double() }}) / (row_count * {{ columns | length }})
        end as missing_rate,
        {{ ml_warehouse.quality_literal(limit) }} as threshold

    from counted

)

select
    row_count,
    cell_count,
    missing_count,
    missing_rate,
    threshold,
    case when missing_rate > threshold then missing_count else 0 end as failures

from rated

{% endtest %}

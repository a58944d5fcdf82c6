-- sqlfluff:indentation:template_blocks_indent:false
{#
    recency: age of the newest `column_name` value, now - max(column), against
    warn_hours / error_hours (defaults: quality_threshold('freshness_warn_hours')
    = 24 and ('freshness_error_hours') = 48). Now is var quality_now (ISO 8601,
    UTC) when given, else the run's start time. Strictly older than
    warn_hours warns, strictly older than error_hours errors (severity error
    unless configured; with severity warn both levels warn). One summary
    row; `failures` is the level: 0 fresh, 1 warn, 2 error. An empty table
    passes (no rows, no age; not_empty catches emptiness); rows whose column
    is all null warn (1). A timestamp with time zone is converted to UTC,
    text is parsed, a plain timestamp is taken as UTC.
#}
{% test recency(model, column_name, warn_hours=none, error_hours=none) %}
{{ config(severity='error', fail_calc='coalesce(max(failures), 0)', warn_if='>= 1', error_if='>= 2') }}
{%- set warn_at = warn_hours if warn_hours is not none else ml_warehouse.quality_threshold('freshness_warn_hours', model, column_name) -%}
{%- set error_at = error_hours if error_hours is not none else ml_warehouse.quality_threshold('freshness_error_hours', model, column_name) -%}

with

newest as (

    select
        count(*) as row_count,
        max({{ ml_warehouse.quality_utc_timestamp(model, column_name) }}) as newest_at

    from {{ model }}

),

aged as (

    select
        row_count,
        newest_at,
        {{ ml_warehouse.quality_now() }} as measured_at,
        cast({{ dbt.datediff('newest_at', ml_warehouse.quality_now(), 'second') }} as {{ ml_warehouse.type_double() }}) / 3600 as age_hours,
        {{ ml_warehouse.quality_literal(warn_at) }} as warn_hours,
        {{ ml_warehouse.quality_literal(error_at) }} as error_hours

    from newest

)

select
    row_count,
    newest_at,
    measured_at,
    age_hours,
    warn_hours,
    error_hours,
    case
        when row_count = 0 then 0
        when newest_at is null then 1
        when age_hours > error_hours then 2
        when age_hours > warn_hours then 1
        else 0
    end as failures

from aged

{% endtest %}

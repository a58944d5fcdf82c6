-- sqlfluff:indentation:template_blocks_indent:false
{#
    duplicate_rate: (rows - distinct keys) / rows, the key being the column
    (column-level test), `columns` (one or more), or else the whole row (all
    columns but `_dlt_*` and meta `monitor: false`). A one-column key ignores
    nulls (count(key) - count(distinct key)); a composite key or whole row
    counts nulls as equal. Errors when the rate is strictly above `threshold`
    (default: quality_threshold('duplicate_rate_error')). One summary row,
    stored in the audit schema: `failures` is the number of duplicates when
    over the threshold, else 0. An empty table has no rate and passes.

    A table loaded by dlt (`_dlt_load_id`) that only grew since the stored row
    was counted is not counted again on a scoped check (WAREHOUSE_CHECK_SINCE,
    scoped_checks.sql): its new rows (a newer load id) are added to the stored
    counts, their keys probed against the older rows, which gives the same
    figures as counting the whole table (`counted` says which was done).
#}
{% test duplicate_rate(model, column_name=none, columns=none, threshold=none) %}
{{ config(
    severity='error',
    store_failures=true,
    schema='audit',
    fail_calc='coalesce(max(failures), 0)',
) }}
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
{%- set load_id = ml_warehouse.load_id_column(model) -%}
{%- set stored = ml_warehouse.stored_duplicate_count(model, key, load_id) -%}
{%- set no_load = 'cast(null as ' ~ dbt.type_string() ~ ')' -%}

with

{% if stored -%}
new_rows as (

    select
        {{ key[0] }} as tested_key,
        {{ load_id }} as load_id

    from {{ model }}
    where {{ load_id }} > '{{ stored.latest }}'

),

counted as (

    select
        {{ stored.rows }} + count(*) as row_count,
        {{ stored.duplicates }} + count(tested_key) - count(distinct tested_key) + (
            select count(distinct {{ key[0] }}) from {{ model }}
            where
                {{ load_id }} <= '{{ stored.latest }}'
                and {{ key[0] }} in (select new_rows.tested_key from new_rows)
        ) as duplicate_count,
        coalesce(max(load_id), '{{ stored.latest }}') as latest_load_id,
        'new rows added' as counted

    from new_rows

),
{%- elif key | length == 1 -%}
counted as (

    select
        count(*) as row_count,
        count({{ key[0] }}) - count(distinct {{ key[0] }}) as duplicate_count,
        {{ 'max(' ~ load_id ~ ')' if load_id else no_load }} as latest_load_id,
        'whole table' as counted

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
        (select count(*) from {{ model }}) - (select count(*) from distinct_keys) as duplicate_count,
        {{ '(select max(' ~ load_id ~ ') from ' ~ model ~ ')' if load_id else no_load }} as latest_load_id,
        'whole table' as counted

),
{%- endif %}

rated as (

    select
        row_count,
        duplicate_count,
        case
            when row_count > 0 then cast(duplicate_count as {{ ml_warehouse.type_double() }}) / row_count
        end as duplicate_rate,
        {{ ml_warehouse.quality_literal(limit) }} as threshold,
        latest_load_id,
        counted

    from counted

)

select
    row_count,
    duplicate_count,
    duplicate_rate,
    threshold,
    case when duplicate_rate > threshold then duplicate_count else 0 end as failures,
    latest_load_id,
    counted

from rated

{% endtest %}

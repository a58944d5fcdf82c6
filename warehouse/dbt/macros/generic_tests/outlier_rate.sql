-- sqlfluff:indentation:template_blocks_indent:false
{#
    outlier_rate: share of non-null values outside the Tukey fences
    [q1 - k * IQR, q3 + k * IQR] (continuous quartiles, macro percentile_cont;
    k = `factor`, default quality_threshold('outlier_iqr_factor') = 1.5), over
    the whole column or per `group_by` column(s) (fences per group, e.g. per
    event category; default: the column's meta `outlier_group_by`, which the
    monitor reads too). Warns when strictly above `threshold` (default:
    quality_threshold('outlier_rate_warn')). One summary row; `failures` is
    the number of outliers when over the threshold, else 0. No non-null
    values (empty table, all-null column) has no rate and passes; a column of
    one repeated value has IQR 0 and no outliers.

    The observed values are read twice (quartiles, then the count), as a
    subquery each time rather than one CTE: an engine that materializes a CTE
    read twice (DuckDB) would hold every value of the column in memory; the
    quartiles are macro grouped_quartiles (on DuckDB from value counts: at 30M
    events quantile_cont's states alone outgrew dbt's 1GB limit).
#}
{% test outlier_rate(model, column_name, factor=none, threshold=none, group_by=none) %}
{{ config(severity='warn', fail_calc='coalesce(max(failures), 0)') }}
{%- set limit = threshold if threshold is not none else ml_warehouse.quality_threshold('outlier_rate_warn', model, column_name) -%}
{%- set k = factor if factor is not none else ml_warehouse.quality_threshold('outlier_iqr_factor', model, column_name) -%}
{%- if group_by is none -%}
    {%- set group_by = ml_warehouse.quality_meta(ml_warehouse.quality_column_node(ml_warehouse.quality_node(model), column_name)).get('outlier_group_by') -%}
{%- endif -%}
{%- set groups = ([group_by] if group_by is string else group_by) if group_by else [] -%}
{%- set group_select, group_keys, group_names, group_match = [], [], [], [] -%}
{%- for group in groups -%}
    {%- set key = 'group_' ~ loop.index -%}
    {%- do group_select.append(group ~ ' as ' ~ key ~ ', ') -%}
    {%- do group_keys.append(key ~ ', ') -%}
    {%- do group_names.append(key) -%}
    {%- do group_match.append(
        '(observed.' ~ key ~ ' = fences.' ~ key
        ~ ' or (observed.' ~ key ~ ' is null and fences.' ~ key ~ ' is null))'
    ) -%}
{%- endfor -%}
{%- set observed -%}
    (
        select
            {{ group_select | join('') }}cast({{ column_name }} as {{ ml_warehouse.type_double() }}) as observed_value
        from {{ model }}
        where {{ column_name }} is not null
    )
{%- endset %}

with

quartiles as (

    {{ ml_warehouse.grouped_quartiles(observed, group_names) }}

),

fences as (

    select
        {{ group_keys | join('') }}{{ ml_warehouse.iqr_lower_bound('q1', 'q3', k) }} as lower_bound,
        {{ ml_warehouse.iqr_upper_bound('q1', 'q3', k) }} as upper_bound

    from quartiles

),

counted as (

    select
        count(*) as value_count,
        coalesce(sum(
            case
                when observed.observed_value < fences.lower_bound
                    or observed.observed_value > fences.upper_bound
                    then 1
                else 0
            end
        ), 0) as outlier_count

    from {{ observed }} as observed
    inner join fences
        on {{ group_match | join(' and ') if groups else '1 = 1' }}

),

rated as (

    select
        value_count,
        outlier_count,
        case
            when value_count > 0 then cast(outlier_count as {{ ml_warehouse.type_double() }}) / value_count
        end as outlier_rate,
        {{ ml_warehouse.quality_literal(limit) }} as threshold,
        {{ ml_warehouse.quality_literal(k) }} as iqr_factor

    from counted

)

select
    value_count,
    outlier_count,
    outlier_rate,
    threshold,
    iqr_factor,
    case when outlier_rate > threshold then outlier_count else 0 end as failures

from rated

{% endtest %}

-- sqlfluff:indentation:template_blocks_indent:false
{#
    accepted_range: non-null values within [min_value, max_value] (either
    bound optional; `inclusive: false` excludes the bounds). Row level: returns
    every out-of-range row with the summary columns quality_value_count,
    quality_failing_count, quality_passing_share, quality_mostly and
    quality_over_tolerance. Fails (severity error unless configured) only when
    the share of non-null values in range is below `mostly` (default 1.0:
    every value); exactly `mostly` passes. `failures` = the out-of-range rows
    then, else 0. Nulls are not judged (use not_null / missing_rate); an empty
    table passes. Failing rows are stored in the audit schema.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true, mostly=1.0) %}
{{ config(
    severity='error',
    store_failures=true,
    schema='audit',
    fail_calc='coalesce(sum(quality_over_tolerance), 0)',
) }}
{%- set below = '<' if inclusive else '<=' -%}
{%- set above = '>' if inclusive else '>=' -%}
{%- set outside = [] -%}
{%- if min_value is not none -%}
    {%- do outside.append(column_name ~ ' ' ~ below ~ ' ' ~ min_value) -%}
{%- endif -%}
{%- if max_value is not none -%}
    {%- do outside.append(column_name ~ ' ' ~ above ~ ' ' ~ max_value) -%}
{%- endif -%}

{{ ml_warehouse.quality_row_check(model, column_name, outside | join(' or ') if outside else '1 = 0', mostly) }}

{% endtest %}

-- sqlfluff:indentation:template_blocks_indent:false
{#
    row_count_between: min_value <= row count <= max_value (either bound
    optional). One row (row_count) when outside, else none. Severity error.
    An empty table fails when min_value >= 1.
#}
{% test row_count_between(model, min_value=none, max_value=none) %}
{{ config(severity='error') }}
{%- set outside = [] -%}
{%- if min_value is not none -%}
    {%- do outside.append('row_count < ' ~ min_value) -%}
{%- endif -%}
{%- if max_value is not none -%}
    {%- do outside.append('row_count > ' ~ max_value) -%}
{%- endif -%}

with

counted as (

    select count(*) as row_count
    from {{ model }}

)

select row_count
from counted
where {{ outside | join(' or ') if outside else '1 = 0' }}

{% endtest %}

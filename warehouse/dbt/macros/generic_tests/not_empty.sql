-- sqlfluff:indentation:template_blocks_indent:false
{#
    not_empty: the table has at least one row. One row (row_count 0) when
    empty, else none. Severity error.
#}
{% test not_empty(model) %}
{{ config(severity='error') }}

with

counted as (

    select count(*) as row_count
    from {{ model }}

)

select row_count
from counted
where row_count = 0

{% endtest %}

-- sqlfluff:indentation:template_blocks_indent:false
{#
    finite_values: no floating column of the model holds NaN or an infinity.
    Every double/float/real column the relation has is checked, so a column
    added later is guarded too (the columns of the tested model: `model` may
    be a subquery of its new rows). One row per column with its count of
    non-finite values. Severity error: a mart promises numbers.
#}
{% test finite_values(model) %}
{{ config(severity='error') }}
{%- set floating = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(ml_warehouse.tested_relation()) -%}
        {%- set dtype = column.dtype | lower -%}
        {%- if 'double' in dtype or 'float' in dtype or 'real' in dtype -%}
            {%- do floating.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}
{%- if floating %}
    {%- for name in floating %}
        select
            '{{ name }}' as column_name,
            count(*) as non_finite_values
        from {{ model }}
        where not {{ ml_warehouse.is_finite(adapter.quote(name)) }}
        having count(*) > 0
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
{%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as column_name,
        0 as non_finite_values
    where 1 = 0
{%- endif %}
{% endtest %}

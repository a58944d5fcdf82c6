-- sqlfluff:indentation:template_blocks_indent:false
{#
    expected_column_types: the relation's columns have the expected types,
    `column_types: {column: type}` or, when omitted, the `data_type` of every
    column documented on the model. Types compare after
    quality_normalize_type (case, synonyms such as text = varchar). One row
    per missing column or mismatched type (actual_type 'missing'); with
    `allow_extra_columns: false` also one per undocumented column (expected
    'none'). Severity error. Checks the catalog, so an empty table is judged
    like any other.
#}
{% test expected_column_types(model, column_types=none, allow_extra_columns=true) %}
{{ config(severity='error') }}
{%- set problems = [] -%}
{%- if execute -%}
    {%- set expected = {} -%}
    {%- if column_types -%}
        {%- for name, data_type in column_types.items() -%}
            {%- do expected.update({name | lower: data_type}) -%}
        {%- endfor -%}
    {%- else -%}
        {%- set node = ml_warehouse.quality_node(model) -%}
        {%- for name, column in ((node.get('columns') or {}) if node is not none else {}).items() -%}
            {%- if column.get('data_type') -%}
                {%- do expected.update({name | lower: column.data_type}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set actual = {} -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- do actual.update({column.name | lower: column.dtype}) -%}
    {%- endfor -%}
    {%- for name, data_type in expected.items() | sort -%}
        {%- if name not in actual -%}
            {%- do problems.append((name, data_type, 'missing')) -%}
        {%- elif ml_warehouse.quality_normalize_type(actual[name]) != ml_warehouse.quality_normalize_type(data_type) -%}
            {%- do problems.append((name, data_type, actual[name])) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not allow_extra_columns -%}
        {%- for name, data_type in actual.items() | sort -%}
            {%- if name not in expected -%}
                {%- do problems.append((name, 'none', data_type)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endif -%}

{%- if problems %}
{%- for name, expected_type, actual_type in problems %}
select
    '{{ name }}' as column_name,
    '{{ expected_type | lower }}' as expected_type,
    '{{ actual_type | lower }}' as actual_type
{{ 'union all' if not loop.last }}
{%- endfor %}
{%- else %}
select
    cast(null as {{ dbt.type_string() }}) as column_name,
    cast(null as {{ dbt.type_string() }}) as expected_type,
    cast(null as {{ dbt.type_string() }}) as actual_type
from {{ model }}
where 1 = 0
{%- endif %}

{% endtest %}

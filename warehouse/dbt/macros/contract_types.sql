{#
    Model contracts (marts YAML `data_type`) declare one portable set of type
    names: bigint, integer, double, boolean, timestamp, varchar. Two of them
    are not valid everywhere (PostgreSQL has no `double`, Spark wants a length
    on `varchar`), so the contract DDL dbt generates maps them per engine here
    instead of forking the YAML. These override dbt's own dispatched macros
    (the root project comes first in the `dbt` dispatch search order).
#}

{% macro contract_data_type(data_type) -%}
    {{ return(adapter.dispatch('contract_data_type', 'ml_warehouse')(data_type)) }}
{%- endmacro %}

{% macro default__contract_data_type(data_type) -%}
    {{ return(data_type) }}
{%- endmacro %}

{% macro postgres__contract_data_type(data_type) -%}
    {{ return({'double': 'double precision'}.get((data_type or '') | trim | lower, data_type)) }}
{%- endmacro %}

{% macro spark__contract_data_type(data_type) -%}
    {{ return({'varchar': 'string', 'text': 'string'}.get((data_type or '') | trim | lower, data_type)) }}
{%- endmacro %}


{# The model's columns with their contract types mapped for this engine. #}
{% macro contract_columns(columns) -%}
    {%- set mapped = {} -%}
    {%- for name, column in columns.items() -%}
        {%- set copy = {} -%}
        {%- do copy.update(column) -%}
        {%- if column.get('data_type') -%}
            {%- do copy.update({'data_type': ml_warehouse.contract_data_type(column['data_type'])}) -%}
        {%- endif -%}
        {%- do mapped.update({name: copy}) -%}
    {%- endfor -%}
    {{ return(mapped) }}
{%- endmacro %}


{% macro postgres__get_empty_schema_sql(columns) -%}
    {{ return(default__get_empty_schema_sql(ml_warehouse.contract_columns(columns))) }}
{%- endmacro %}

{% macro spark__get_empty_schema_sql(columns) -%}
    {{ return(default__get_empty_schema_sql(ml_warehouse.contract_columns(columns))) }}
{%- endmacro %}

{% macro postgres__get_table_columns_and_constraints() -%}
    {%- set column_ddl = adapter.render_raw_columns_constraints(raw_columns=ml_warehouse.contract_columns(model['columns'])) -%}
    {%- set model_ddl = adapter.render_raw_model_constraints(raw_constraints=model['constraints']) -%}
    ({{ (column_ddl + model_ddl) | join(', ') }})
{%- endmacro %}

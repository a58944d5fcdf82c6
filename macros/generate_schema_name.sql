{#
    Schemas are exactly raw, staging, intermediate, marts, quarantine and
    monitoring: a custom schema is used as given, not prefixed with the
    target schema (dbt's default would give `main_staging`).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

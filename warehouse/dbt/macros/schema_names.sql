{#
    Production targets (var `production_targets`, default duckdb, postgres, spark
    and prod) write the schemas as named: staging, intermediate, marts, quarantine, audit.
    Any other target follows dbt's own convention, `<target schema>_<custom schema>`,
    so a developer's `dbt build --target postgres_dev` on a shared server writes
    `dev_alice_staging`, `dev_alice_marts`, ... and never the production schemas.
    Sources are not affected: every target reads the one `raw` that ingestion loads.
#}
{% macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.name in var('production_targets', ['duckdb', 'postgres', 'spark', 'prod']) -%}
        {{ custom_schema_name | trim }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

{#
    The warehouse's record of when dbt last built each relation: one row per
    model and seed in `monitoring.dbt_model_builds`, written by a post-hook in
    the same transaction as the model. `python -m monitoring --incremental`
    trusts its stored measurement of a table only while this row, and that of
    every model a view reads, is unchanged, whoever ran dbt. DuckDB only (the
    monitor reads the DuckDB warehouse); renders nothing elsewhere.
#}
{% macro model_builds_table() -%}
    {%- if target.type == 'duckdb' -%}
        create schema if not exists monitoring;
        create table if not exists monitoring.dbt_model_builds (
            relation varchar primary key,
            invocation_id varchar not null,
            built_at timestamptz not null
        )
    {%- endif -%}
{%- endmacro %}

{% macro record_build() -%}
    {%- if target.type == 'duckdb' -%}
        insert or replace into monitoring.dbt_model_builds
        values ('{{ this.schema }}.{{ this.identifier }}', '{{ invocation_id }}', now())
    {%- endif -%}
{%- endmacro %}

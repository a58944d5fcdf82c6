{#
    Spark reads the raw layer from the Parquet lake that dlt's filesystem
    destination writes (WAREHOUSE_DESTINATION=filesystem): one folder per
    table, `<WAREHOUSE_LAKE>/raw/<table>/*.parquet`. Run on-run-start, this
    (re)registers each raw source table some model or test reads as an
    external table over its folder, so `source('users', 'users')` resolves as
    on the other engines. Re-creating it every run picks up new columns
    (mergeSchema); dropping an external table never deletes its files.
    Renders nothing on other engines.
#}
{% macro spark_raw_tables() -%}
    {%- if execute and target.type == 'spark' -%}
        {%- set lake = env_var('WAREHOUSE_LAKE', 'data/lake') | trim | replace('\\', '/') -%}
        {%- set lake = lake[:-1] if lake.endswith('/') else lake -%}
        {%- if not (lake.startswith('/') or ':' in lake) -%}
            {#- Spark would resolve a relative location under raw.db: anchor it at the
                working directory (the project root), as dlt does. -#}
            {%- set cwd = run_query("select reflect('java.lang.System', 'getProperty', 'user.dir')").columns[0].values()[0] -%}
            {%- set lake = cwd ~ '/' ~ (lake[2:] if lake.startswith('./') else lake) -%}
        {%- endif -%}
        {%- set used = [] -%}
        {%- for node in graph.nodes.values() -%}
            {%- do used.extend(node.get('depends_on', {}).get('nodes', [])) -%}
        {%- endfor -%}
        {%- set statements = ['create schema if not exists raw'] -%}
        {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
            {%- if source.schema == 'raw' and source.unique_id in used -%}
                {%- set table = 'raw.' ~ source.identifier -%}
                {%- do statements.append('drop table if exists ' ~ table) -%}
                {%- do statements.append(
                    'create table ' ~ table ~ " using parquet options (mergeSchema 'true')"
                    ~ " location '" ~ lake ~ '/raw/' ~ source.identifier ~ "'"
                ) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for statement in statements -%}
            {%- do run_query(statement) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}


{#
    The materialization of a model merged on a unique key: `incremental`
    (merge strategy), except on Spark, whose Parquet tables have no MERGE
    (that needs Delta or Iceberg): there the model is rebuilt as a table each
    run, with the same rows.
#}
{% macro merge_materialization() -%}
    {{ return(adapter.dispatch('merge_materialization', 'ml_warehouse')()) }}
{%- endmacro %}

{% macro default__merge_materialization() -%}
    {{ return('incremental') }}
{%- endmacro %}

{% macro spark__merge_materialization() -%}
    {{ return('table') }}
{%- endmacro %}

{#
    Which rows a data test reads: dbt wraps the `model` of every generic test
    in get_where_subquery (this project's version replaces dbt's).

    A scoped check (`python -m pipeline run` after new rows, see
    docs/running.md) sets the environment variable WAREHOUSE_CHECK_SINCE to
    the start of the last passing build (UTC). A model that says which of its
    rows are new since then, with a SQL condition in meta `new_rows` ({since}
    stands for that instant, {<model name>} for another model's relation),
    then has:
    - its row-level tests (not_null, accepted_values, accepted_range, ...)
      read only those rows;
    - its `unique` tests read every row sharing a key with them: the new
      rows probed against the whole table, so a new copy of an old key fails;
    - its other tests (rates, counts, recency, types) read the whole model.
    Without the variable (a full check, or `dbt build` typed by hand) every
    test reads the whole model. The variable is read only when tests run, so
    its value never makes dbt parse the project again.
#}
{% macro default__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- if config.get('where') -%}
        {%- do conditions.append(config.get('where')) -%}
    {%- endif -%}
    {%- set new_rows = ml_warehouse.new_rows_condition() -%}
    {%- if new_rows and model.test_metadata.name == 'unique' -%}
        {%- set key = model.test_metadata.kwargs.column_name -%}
        {%- do conditions.append(key ~ ' in (select ' ~ key ~ ' from ' ~ relation ~ ' where ' ~ new_rows ~ ')') -%}
    {%- elif new_rows -%}
        {%- do conditions.append(new_rows) -%}
    {%- endif -%}
    {%- if conditions -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{# Tests that judge each row on its own: on a scoped check they read the new rows. #}
{% macro row_level_tests() -%}
    {{ return(['not_null', 'accepted_values', 'relationships', 'accepted_range', 'matches_regex', 'finite_values']) }}
{%- endmacro %}


{# The tested model's meta new_rows, rendered, on a scoped check of a test that reads it; else ''. #}
{% macro new_rows_condition() -%}
    {%- if not execute or model.resource_type != 'test' or not model.test_metadata -%}
        {{ return('') }}
    {%- endif -%}
    {%- set since = env_var('WAREHOUSE_CHECK_SINCE', '') -%}
    {%- if not since or model.test_metadata.name not in ml_warehouse.row_level_tests() + ['unique'] -%}
        {{ return('') }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.attached_node) -%}
    {%- set template = (tested.config.meta or {}).get('new_rows') if tested else none -%}
    {%- if not template -%}
        {{ return('') }}
    {%- endif -%}
    {%- if not modules.re.fullmatch('\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?', since) -%}
        {{ exceptions.raise_compiler_error("WAREHOUSE_CHECK_SINCE must be a UTC time like 2026-01-31 08:00:00, got " ~ since) }}
    {%- endif -%}
    {%- set rendered = namespace(text=template.replace('{since}', "cast('" ~ since ~ "' as " ~ dbt.type_timestamp() ~ ")")) -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and ('{' ~ node.name ~ '}') in rendered.text -%}
        {%- set rendered.text = rendered.text.replace('{' ~ node.name ~ '}', ml_warehouse.node_relation(node) | string) -%}
    {%- endfor -%}
    {{ return('(' ~ rendered.text ~ ')') }}
{%- endmacro %}


{#
    The relation of the model the running data test is attached to: a test's
    own `model` argument may be the subquery above, which cannot be described.
#}
{% macro tested_relation() -%}
    {{ return(ml_warehouse.node_relation(graph.nodes.get(model.attached_node))) }}
{%- endmacro %}


{% macro node_relation(node) -%}
    {{ return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias)) }}
{%- endmacro %}


{# '_dlt_load_id' when the tested relation has dlt's load id column, else none. #}
{% macro load_id_column(relation) -%}
    {%- if not execute or relation is string -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for column in adapter.get_columns_in_relation(relation) if column.name == '_dlt_load_id' -%}
        {{ return('_dlt_load_id') }}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}


{#
    duplicate_rate on a scoped check (generic_tests/duplicate_rate.sql): the
    counts the running test stored when it last ran (its row in the audit
    schema), when they can be added to: a one-column key, no `where`, and the
    rows loaded up to the stored newest load id exactly as many as then (a
    delete, an erasure or a merge that replaced a row changes their count).
    Else none: the test counts the whole table.
#}
{% macro stored_duplicate_count(relation, key, load_id) -%}
    {%- if not load_id or key | length != 1 or config.get('where') or not env_var('WAREHOUSE_CHECK_SINCE', '') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set stored = adapter.get_relation(database=model.database, schema=model.schema, identifier=model.alias) -%}
    {%- if stored is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(stored) | map(attribute='name') | list -%}
    {%- if 'latest_load_id' not in names or 'counted' not in names -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set last = run_query('select row_count, duplicate_count, latest_load_id from ' ~ stored) -%}
    {%- if last.rows | length != 1 or last.rows[0][2] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set rows, duplicates = last.rows[0][0] | int, last.rows[0][1] | int -%}
    {%- set latest = (last.rows[0][2] | string).replace("'", "''") -%}
    {%- set older = run_query('select count(*) from ' ~ relation ~ ' where ' ~ load_id ~ " <= '" ~ latest ~ "'") -%}
    {%- if older.rows[0][0] | int != rows -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return({'rows': rows, 'duplicates': duplicates, 'latest': latest}) }}
{%- endmacro %}

{#
    Quality config shared by the generic tests (macros/generic_tests) and the
    monitor (monitoring/config.py): a threshold is the column's meta, else the
    model's (or source's) meta, else the project var, else the documented
    default. Keys and defaults are listed in macros/generic_tests/_generic_tests.yml.
#}

{% macro quality_defaults() -%}
    {{ return({
        'missing_rate_warn': 0.05,
        'duplicate_rate_error': 0.01,
        'outlier_rate_warn': 0.10,
        'outlier_iqr_factor': 1.5,
        'freshness_warn_hours': 24,
        'freshness_error_hours': 48,
    }) }}
{%- endmacro %}


{#
    The manifest node (model, seed, snapshot or source) a test's `model`
    relation points at, found by schema and identifier; none at parse time or
    when `model` is not a relation (a `where` config turns it into a subquery).
#}
{% macro quality_node(model) -%}
    {%- if not execute or model is none or model.identifier is not defined or model.identifier is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set schema = (model.schema or '') | lower -%}
    {%- set identifier = model.identifier | lower -%}
    {%- set candidates = (graph.nodes.values() | list) + (graph.sources.values() | list) -%}
    {%- for node in candidates -%}
        {%- if node.resource_type in ['model', 'seed', 'snapshot', 'source'] -%}
            {%- set name = node.get('alias') or node.get('identifier') or node.name -%}
            {%- if (node.schema | lower) == schema and (name | lower) == identifier -%}
                {{ return(node) }}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}


{# meta as dbt merges it: top-level `meta`, then `config.meta` (and a source's source_meta first). #}
{% macro quality_meta(node) -%}
    {%- set merged = {} -%}
    {%- if node is not none -%}
        {%- do merged.update(node.get('source_meta') or {}) -%}
        {%- do merged.update(node.get('meta') or {}) -%}
        {%- do merged.update((node.get('config') or {}).get('meta') or {}) -%}
    {%- endif -%}
    {{ return(merged) }}
{%- endmacro %}


{# A column's node entry, by name (case-insensitive); none when not documented. #}
{% macro quality_column_node(node, column_name) -%}
    {%- if node is none or column_name is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for name, column in (node.get('columns') or {}).items() -%}
        {%- if (name | lower) == (column_name | lower) -%}
            {{ return(column) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}


{#
    quality_threshold(key, model, column_name=none) -> float: column meta, then
    model meta, then var(key), then quality_defaults(). Non-numeric settings
    are skipped, as the monitor does.
#}
{% macro quality_threshold(key, model=none, column_name=none) -%}
    {%- set node = ml_warehouse.quality_node(model) -%}
    {%- set scopes = [] -%}
    {%- set column = ml_warehouse.quality_column_node(node, column_name) -%}
    {%- if column is not none -%}
        {%- do scopes.append(ml_warehouse.quality_meta(column)) -%}
    {%- endif -%}
    {%- do scopes.append(ml_warehouse.quality_meta(node)) -%}
    {%- do scopes.append({key: var(key, none)}) -%}
    {%- do scopes.append(ml_warehouse.quality_defaults()) -%}
    {%- for scope in scopes -%}
        {%- set value = scope.get(key) -%}
        {%- if value is not none and value is not boolean and value | string | trim != '' -%}
            {%- set number = value | float(none) -%}
            {%- if number is not none -%}
                {{ return(number) }}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error('no quality threshold for ' ~ key) }}
{%- endmacro %}


{# A threshold as a SQL double literal. #}
{% macro quality_literal(value) -%}
    cast({{ value }} as {{ ml_warehouse.type_double() }})
{%- endmacro %}


{#
    "Now" for recency checks, as a UTC timestamp literal: var quality_now (ISO
    8601, `Z` or an offset allowed) when given, else the run's start time.
#}
{% macro quality_now() -%}
    {%- set now = var('quality_now', none) -%}
    {%- if now is none or now | string | trim == '' -%}
        {%- set now_utc = run_started_at -%}
    {%- else -%}
        {%- set text = now | string | trim | replace('Z', '+00:00') | replace(' ', 'T', 1) -%}
        {%- set parsed = modules.datetime.datetime.fromisoformat(text) -%}
        {%- if parsed.tzinfo is not none -%}
            {%- set now_utc = parsed.astimezone(modules.pytz.utc) -%}
        {%- else -%}
            {%- set now_utc = parsed -%}
        {%- endif -%}
    {%- endif -%}
    cast('{{ now_utc.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}


{#
    Columns a whole-row check looks at: every column of the relation except
    dlt's bookkeeping (`_dlt_*`) and columns whose meta says `monitor: false`,
    as the monitor does. Empty at parse time.
#}
{% macro quality_columns(model) -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set node = ml_warehouse.quality_node(model) -%}
    {%- set names = [] -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- set meta = ml_warehouse.quality_meta(ml_warehouse.quality_column_node(node, column.name)) -%}
        {%- set opted_out = (meta.get('monitor', true) | string | trim | lower) in ['false', '0', 'no', 'off'] -%}
        {%- if not column.name.startswith('_dlt_') and not opted_out -%}
            {%- do names.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}


{# The relation's column type (lower case) by name; none when absent or at parse time. #}
{% macro quality_column_type(model, column_name) -%}
    {%- if not execute or model.identifier is not defined -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- if (column.name | lower) == (column_name | lower) -%}
            {{ return(column.dtype | lower) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}


{#
    A type name reduced to a comparable form: lower case, common synonyms
    folded (text/string -> varchar, int -> integer, double precision -> double, ...),
    a string length dropped.
#}
{% macro quality_normalize_type(data_type) -%}
    {%- set text = (data_type or '') | string | trim | lower -%}
    {%- set aliases = {
        'text': 'varchar', 'string': 'varchar', 'character varying': 'varchar', 'char varying': 'varchar',
        'int': 'integer', 'int4': 'integer', 'signed': 'integer',
        'int8': 'bigint', 'long': 'bigint',
        'int2': 'smallint', 'short': 'smallint',
        'float8': 'double', 'double precision': 'double',
        'float4': 'float', 'real': 'float',
        'bool': 'boolean', 'logical': 'boolean',
        'timestamp without time zone': 'timestamp', 'datetime': 'timestamp',
        'timestamptz': 'timestamp with time zone',
    } -%}
    {%- if text.startswith('varchar(') or text.startswith('character varying(') -%}
        {%- set text = 'varchar' -%}
    {%- endif -%}
    {{ return(aliases.get(text, text)) }}
{%- endmacro %}


{#
    A timestamp column as a UTC timestamp without time zone: a timestamp with
    time zone is converted, text is parsed (bad values null), a plain
    timestamp is taken as UTC already (the project's convention).
#}
{% macro quality_utc_timestamp(model, column_name) -%}
    {%- set data_type = ml_warehouse.quality_column_type(model, column_name) -%}
    {%- if data_type is none -%}
        {{ return(column_name) }}
    {%- elif 'time zone' in data_type or data_type == 'timestamptz' -%}
        {{ return(ml_warehouse.to_utc_timestamp(column_name, safe=false)) }}
    {%- elif 'char' in data_type or data_type in ['text', 'string'] -%}
        {{ return(ml_warehouse.to_utc_timestamp(column_name, safe=true)) }}
    {%- else -%}
        {{ return(column_name) }}
    {%- endif -%}
{%- endmacro %}


{#
    The body of a row-level test with a `mostly` tolerance: the model's failing
    rows (non-null `column_name` where `failing` holds) with the summary
    columns; quality_over_tolerance is 1 on them when the passing share is
    below `mostly` (exactly `mostly` passes), for fail_calc =
    sum(quality_over_tolerance). The summary and the failing rows each read the
    model: one CTE of every row read twice would be materialized whole (0.5 s
    a test on 10M rows instead of milliseconds).
#}
{% macro quality_row_check(model, column_name, failing, mostly) -%}
with

-- The nulls are left out in the aggregates, not by a filter: on a scoped check
-- the model is a semi-join of the new rows, and a filter on a derived column
-- made DuckDB build its hash table from the whole table (0.54 s against 0.16 s
-- for the same 101k of 10M events).
summary as (

    select
        count({{ column_name }}) as quality_value_count,
        coalesce(
            sum(case when {{ column_name }} is not null and ({{ failing }}) then 1 else 0 end), 0
        ) as quality_failing_count

    from {{ model }}

),

failing_rows as (

    select *

    from {{ model }}
    where {{ column_name }} is not null and ({{ failing }})

),

final as (

    select
        failing_rows.*,
        summary.quality_value_count,
        summary.quality_failing_count,
        cast(summary.quality_value_count - summary.quality_failing_count as {{ ml_warehouse.type_double() }})
        / summary.quality_value_count as quality_passing_share,
        {{ ml_warehouse.quality_literal(mostly) }} as quality_mostly,
        case
            when cast(summary.quality_value_count - summary.quality_failing_count as {{ ml_warehouse.type_double() }})
                / summary.quality_value_count < {{ ml_warehouse.quality_literal(mostly) }}
                then 1
            else 0
        end as quality_over_tolerance

    from failing_rows
    cross join summary

)

select * from final
{%- endmacro %}

{#
    Feature helpers every project can use: Tukey fences (the outlier_rate
    test and the monitor share them), the point in time features are computed
    for, and day parts that work on every engine.
#}

{# Day of week as an integer, Monday = 0 ... Sunday = 6. #}
{% macro day_of_week(timestamp) -%}
    {{ return(adapter.dispatch('day_of_week', 'ml_warehouse')(timestamp)) }}
{%- endmacro %}


{% macro duckdb__day_of_week(timestamp) -%}
    cast(isodow({{ timestamp }}) - 1 as integer)
{%- endmacro %}


{% macro spark__day_of_week(timestamp) -%}
    cast((dayofweek({{ timestamp }}) + 5) % 7 as integer)
{%- endmacro %}


{% macro default__day_of_week(timestamp) -%}
    cast(extract(isodow from {{ timestamp }}) - 1 as integer)
{%- endmacro %}


{# Hour of day 0-23 (ANSI extract works on every target engine). #}
{% macro hour_of_day(timestamp) -%}
    cast(extract(hour from {{ timestamp }}) as integer)
{%- endmacro %}


{#
    Tukey fences: q1 - k*IQR and q3 + k*IQR, k = var outlier_iqr_factor (1.5).
    iqr_bounds() gives the select list of an aggregate query over `column`
    (group it yourself): <prefix>q1, q3, iqr, lower_bound, upper_bound.
#}
{% macro iqr_lower_bound(q1, q3, factor=none) -%}
    ({{ q1 }} - {{ factor if factor is not none else ml_warehouse.quality_threshold('outlier_iqr_factor') }} * ({{ q3 }} - {{ q1 }}))
{%- endmacro %}


{% macro iqr_upper_bound(q1, q3, factor=none) -%}
    ({{ q3 }} + {{ factor if factor is not none else ml_warehouse.quality_threshold('outlier_iqr_factor') }} * ({{ q3 }} - {{ q1 }}))
{%- endmacro %}


{% macro iqr_bounds(column, prefix='', factor=none) -%}
    {%- set q1 = ml_warehouse.percentile_cont(column, 0.25) -%}
    {%- set q3 = ml_warehouse.percentile_cont(column, 0.75) -%}
    {%- set double = ml_warehouse.type_double() -%}
    {{ ml_warehouse.round_double('cast(' ~ q1 ~ ' as ' ~ double ~ ')') }} as {{ prefix }}q1,
    {{ ml_warehouse.round_double('cast(' ~ q3 ~ ' as ' ~ double ~ ')') }} as {{ prefix }}q3,
    {{ ml_warehouse.round_double('cast(' ~ q3 ~ ' - ' ~ q1 ~ ' as ' ~ double ~ ')') }} as {{ prefix }}iqr,
    {{ ml_warehouse.round_double('cast(' ~ ml_warehouse.iqr_lower_bound(q1, q3, factor) ~ ' as ' ~ double ~ ')') }} as {{ prefix }}lower_bound,
    {{ ml_warehouse.round_double('cast(' ~ ml_warehouse.iqr_upper_bound(q1, q3, factor) ~ ' as ' ~ double ~ ')') }} as {{ prefix }}upper_bound
{%- endmacro %}


{# True when value lies outside [lower, upper]; null value -> false. #}
{% macro is_outlier(value, lower_bound, upper_bound) -%}
    coalesce({{ value }} < {{ lower_bound }} or {{ value }} > {{ upper_bound }}, false)
{%- endmacro %}


{#
    The point in time features are computed for: var features_as_of (ISO 8601,
    `Z` or offset allowed) or, by default, the run's start (run_started_at).
    Returns a UTC timestamp literal, to the microsecond (the speed layer answers as
    of such an instant, and a build as of it must count the same events).
#}
{% macro features_as_of() -%}
    {%- set as_of = var('features_as_of', none) -%}
    {%- if as_of is none or as_of == '' -%}
        {%- set as_of_utc = run_started_at -%}
    {%- else -%}
        {%- set parsed = modules.datetime.datetime.fromisoformat(as_of | string) -%}
        {%- if parsed.tzinfo is not none -%}
            {%- set as_of_utc = parsed.astimezone(modules.pytz.utc) -%}
        {%- else -%}
            {%- set as_of_utc = parsed -%}
        {%- endif -%}
    {%- endif -%}
    {%- set fraction = ('.%06d' % as_of_utc.microsecond) if as_of_utc.microsecond else '' %}
    cast('{{ as_of_utc.strftime("%Y-%m-%d %H:%M:%S") ~ fraction }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

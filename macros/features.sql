{#
    Reusable feature logic shared by the marts (and unit-tested through
    them, see models/marts/*/_*__models.yml).
#}

{#
    Age band with right-inclusive bins: (0,25] young, (25,35] adult,
    (35,50] middle, (50,100] senior. Outside (0,100] or null -> null
    (0 itself is outside the first bin, as with pandas.cut).
#}
{% macro age_group(age) -%}
    case
        when {{ age }} > 0 and {{ age }} <= 25 then 'young'
        when {{ age }} > 25 and {{ age }} <= 35 then 'adult'
        when {{ age }} > 35 and {{ age }} <= 50 then 'middle'
        when {{ age }} > 50 and {{ age }} <= 100 then 'senior'
    end
{%- endmacro %}


{# Syntactic email check with the project's pattern (var email_pattern); null -> false. #}
{% macro is_valid_email(email) -%}
    coalesce({{ regexp_like(email, var('email_pattern')) }}, false)
{%- endmacro %}


{# Lower-cased part after the @, null when there is no @. #}
{% macro email_domain(email) -%}
    case
        when {{ email }} like '%@%'
            then lower({{ dbt.split_part(email, "'@'", 2) }})
    end
{%- endmacro %}


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
    ({{ q1 }} - {{ factor if factor is not none else var('outlier_iqr_factor') }} * ({{ q3 }} - {{ q1 }}))
{%- endmacro %}

{% macro iqr_upper_bound(q1, q3, factor=none) -%}
    ({{ q3 }} + {{ factor if factor is not none else var('outlier_iqr_factor') }} * ({{ q3 }} - {{ q1 }}))
{%- endmacro %}

{% macro iqr_bounds(column, prefix='', factor=none) -%}
    {%- set q1 = percentile_cont(column, 0.25) -%}
    {%- set q3 = percentile_cont(column, 0.75) -%}
    cast({{ q1 }} as {{ type_double() }}) as {{ prefix }}q1,
    cast({{ q3 }} as {{ type_double() }}) as {{ prefix }}q3,
    cast({{ q3 }} - {{ q1 }} as {{ type_double() }}) as {{ prefix }}iqr,
    cast({{ iqr_lower_bound(q1, q3, factor) }} as {{ type_double() }}) as {{ prefix }}lower_bound,
    cast({{ iqr_upper_bound(q1, q3, factor) }} as {{ type_double() }}) as {{ prefix }}upper_bound
{%- endmacro %}


{# True when value lies outside [lower, upper]; null value -> false. #}
{% macro is_outlier(value, lower_bound, upper_bound) -%}
    coalesce({{ value }} < {{ lower_bound }} or {{ value }} > {{ upper_bound }}, false)
{%- endmacro %}


{#
    The point in time features are computed for: var features_as_of (ISO 8601,
    `Z` or offset allowed) or, by default, the run's start (run_started_at).
    Returns a UTC timestamp literal.
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
    cast('{{ as_of_utc.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

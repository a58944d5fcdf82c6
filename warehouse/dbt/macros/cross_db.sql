{#
    Engine-specific SQL lives here, behind adapter.dispatch, so models stay
    portable: each macro has a duckdb implementation, a default (PostgreSQL
    flavoured, ANSI where possible) and a Spark one where the default fails.
#}

{#
    Cast that yields null instead of failing ("abc" as integer -> null).
    Numbers must be plain decimal text on every engine (optional sign,
    surrounding blanks): DuckDB's try_cast would round '3.7' to an integer 4,
    read '1e3' as 1000 and 'NaN' or 'inf' as a double, PostgreSQL's and
    Spark's would not, so all three check the same pattern. A non-finite
    number is an invalid value, never a value.
#}
{% macro safe_cast(expression, data_type) -%}
    {{ return(adapter.dispatch('safe_cast', 'ml_warehouse')(expression, data_type)) }}
{%- endmacro %}

{% macro duckdb__safe_cast(expression, data_type) -%}
    {%- if ml_warehouse.is_number_type(data_type) -%}
        case
            when {{ ml_warehouse.duckdb__regexp_like('cast(' ~ expression ~ ' as varchar)', ml_warehouse.safe_cast_pattern(data_type)) }}
                then try_cast({{ expression }} as {{ data_type }})
        end
    {%- else -%}
        try_cast({{ expression }} as {{ data_type }})
    {%- endif -%}
{%- endmacro %}

{% macro spark__safe_cast(expression, data_type) -%}
    {%- if ml_warehouse.is_number_type(data_type) -%}
        case
            when {{ ml_warehouse.spark__regexp_like('cast(' ~ expression ~ ' as string)', ml_warehouse.safe_cast_pattern(data_type)) }}
                then try_cast({{ expression }} as {{ data_type }})
        end
    {%- else -%}
        try_cast({{ expression }} as {{ data_type }})
    {%- endif -%}
{%- endmacro %}

{% macro default__safe_cast(expression, data_type) -%}
    {#- No try_cast: guard the cast with a pattern for the target's family (on its text). -#}
    {%- set pattern = ml_warehouse.safe_cast_pattern(data_type) -%}
    {%- if not pattern -%}
        {{ return('cast(' ~ expression ~ ' as ' ~ data_type ~ ')') }}
    {%- endif -%}
    case
        when {{ ml_warehouse.regexp_like('cast(' ~ expression ~ ' as ' ~ dbt.type_string() ~ ')', pattern) }}
            then cast({{ expression }} as {{ data_type }})
    end
{%- endmacro %}

{#
    The text a cast to data_type accepts, for engines without try_cast: integers
    short enough not to overflow, decimal/scientific numbers, ISO 8601 dates and
    timestamps with valid field ranges (an impossible day such as 02-30 still
    fails). None for other types.
#}
{% macro safe_cast_pattern(data_type) -%}
    {%- set family = (data_type | lower).split('(')[0] | trim -%}
    {%- if family in ['bigint', 'int8', 'long'] -%}
        {{ return('^\\s*[-+]?[0-9]{1,18}\\s*$') }}
    {%- elif family in ['smallint', 'int2', 'short', 'tinyint', 'int1'] -%}
        {{ return('^\\s*[-+]?[0-9]{1,4}\\s*$') }}
    {%- elif family in ['integer', 'int', 'int4', 'signed'] -%}
        {{ return('^\\s*[-+]?[0-9]{1,9}\\s*$') }}
    {%- elif 'double' in family or 'float' in family or 'numeric' in family or 'decimal' in family or 'real' in family -%}
        {{ return('^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$') }}
    {%- elif 'timestamp' in family or 'date' in family -%}
        {{ return(
            '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])'
            ~ '([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]+)?)?)?'
            ~ '(Z|[-+][0-9]{2}(:?[0-9]{2})?)?$'
        ) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{% macro is_number_type(data_type) -%}
    {%- set family = (data_type | lower).split('(')[0] | trim -%}
    {{ return(family in [
        'bigint', 'int8', 'long', 'smallint', 'int2', 'short', 'tinyint', 'int1',
        'integer', 'int', 'int4', 'signed',
    ] or 'double' in family or 'float' in family or 'numeric' in family
      or 'decimal' in family or 'real' in family) }}
{%- endmacro %}


{#
    Whether a floating value is a number: not NaN, not +-infinity (PostgreSQL
    and DuckDB hold both; a mart must not).
#}
{% macro is_finite(expression) -%}
    {{ return(adapter.dispatch('is_finite', 'ml_warehouse')(expression)) }}
{%- endmacro %}

{% macro duckdb__is_finite(expression) -%}
    isfinite({{ expression }})
{%- endmacro %}

{% macro spark__is_finite(expression) -%}
    (not isnan({{ expression }}) and abs({{ expression }}) != double('infinity'))
{%- endmacro %}

{% macro default__is_finite(expression) -%}
    ({{ expression }} not in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8))
{%- endmacro %}


{#
    A timestamp in UTC without a time zone (our convention for every *_at
    column). safe=true: ISO 8601 text as a source sent it; a time with an offset
    or `Z` is that instant, one without (or a bare date) is a wall time in the
    source's time zone `tz` (its `timezone` option, default UTC); text that does
    not parse gives null. The session's (the process's) time zone never enters.
    safe=false: a timestamp with time zone (raw's typed columns, `_loaded_at`).
#}
{% macro to_utc_timestamp(expression, safe=true, tz='UTC') -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'ml_warehouse')(expression, safe, tz)) }}
{%- endmacro %}

{# A time of day followed by a UTC offset or Z, at the end of the text. #}
{% macro utc_offset_pattern() -%}
    {{ return('[0-9]:[0-9]{2}(:[0-9]{2}(\\.[0-9]*)?)?\\s*([zZ]|[-+][0-9]{2}(:?[0-9]{2})?)$') }}
{%- endmacro %}

{% macro duckdb__to_utc_timestamp(expression, safe=true, tz='UTC') -%}
    {#- a time without an offset is a wall time in the source's zone tz -#}
    {%- set without_offset = 'try_cast(' ~ expression ~ ' as timestamp)' -%}
    {%- if tz != 'UTC' -%}
        {%- set without_offset = ml_warehouse.duckdb__utc_wall_time("timezone('" ~ tz ~ "', " ~ without_offset ~ ")") -%}
    {%- endif -%}
    {%- if safe -%}
        case
            when {{ ml_warehouse.duckdb__regexp_like(expression, ml_warehouse.utc_offset_pattern()) }}
                then {{ ml_warehouse.duckdb__utc_wall_time('try_cast(' ~ expression ~ ' as timestamptz)') }}
            else {{ without_offset }}
        end
    {%- else -%}
        {{ ml_warehouse.duckdb__utc_wall_time('cast(' ~ expression ~ ' as timestamptz)') }}
    {%- endif -%}
{%- endmacro %}

{#
    A timestamp with time zone as its UTC wall time. timezone('UTC', x) goes
    through ICU's calendar for every row (0.35 s of a 2-core machine per 10M
    rows); a finite instant's UTC wall time is its microseconds since the epoch,
    read without it. Infinities keep timezone(). DuckDB evaluates the repeated
    expression once.
#}
{% macro duckdb__utc_wall_time(timestamptz) -%}
    case
        when isfinite({{ timestamptz }}) then make_timestamp(epoch_us({{ timestamptz }}))
        else timezone('UTC', {{ timestamptz }})
    end
{%- endmacro %}

{#- Spark's session time zone is UTC (profiles.yml), so a wall time parses as UTC. -#}
{% macro spark__to_utc_timestamp(expression, safe=true, tz='UTC') -%}
    {%- if safe and tz != 'UTC' -%}
        case
            when {{ ml_warehouse.regexp_like(expression, ml_warehouse.utc_offset_pattern()) }}
                then try_cast({{ expression }} as timestamp)
            else to_utc_timestamp(try_cast({{ expression }} as timestamp), '{{ tz }}')
        end
    {%- elif safe -%}
        try_cast({{ expression }} as timestamp)
    {%- else -%}
        cast({{ expression }} as timestamp)
    {%- endif -%}
{%- endmacro %}

{% macro default__to_utc_timestamp(expression, safe=true, tz='UTC') -%}
    {%- if safe -%}
        (case
            when {{ ml_warehouse.regexp_like(expression, ml_warehouse.utc_offset_pattern()) }}
                then {{ ml_warehouse.safe_cast(expression, 'timestamptz') }}
            else ({{ ml_warehouse.safe_cast(expression, 'timestamp') }} at time zone '{{ tz }}')
        end at time zone 'UTC')
    {%- else -%}
        (cast({{ expression }} as timestamptz) at time zone 'UTC')
    {%- endif -%}
{%- endmacro %}


{#
    A raw _loaded_at (as dlt loads it) equal to a UTC timestamp a model made of
    it with to_utc_timestamp: the raw column stands alone on its side, so a join
    on it lets DuckDB push the other side's values into the raw scan, which then
    skips the row groups of other loads.
#}
{% macro raw_loaded_at_is(raw_column, utc_timestamp) -%}
    {{ return(adapter.dispatch('raw_loaded_at_is', 'ml_warehouse')(raw_column, utc_timestamp)) }}
{%- endmacro %}

{% macro duckdb__raw_loaded_at_is(raw_column, utc_timestamp) -%}
    {{ raw_column }} = timezone('UTC', {{ utc_timestamp }})
{%- endmacro %}

{% macro spark__raw_loaded_at_is(raw_column, utc_timestamp) -%}
    {{ ml_warehouse.to_utc_timestamp(raw_column, safe=false) }} = {{ utc_timestamp }}
{%- endmacro %}

{% macro default__raw_loaded_at_is(raw_column, utc_timestamp) -%}
    {{ raw_column }} = ({{ utc_timestamp }} at time zone 'UTC')
{%- endmacro %}

{# True when the whole string matches the (anchored) regular expression. #}
{% macro regexp_like(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_like', 'ml_warehouse')(expression, pattern)) }}
{%- endmacro %}

{% macro duckdb__regexp_like(expression, pattern) -%}
    regexp_matches({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regexp_like(expression, pattern) -%}
    ({{ expression }} rlike '{{ pattern | replace("\\", "\\\\") }}')
{%- endmacro %}

{% macro default__regexp_like(expression, pattern) -%}
    ({{ expression }} ~ '{{ pattern }}')
{%- endmacro %}


{# Continuous percentile (linear interpolation), as an aggregate. #}
{% macro percentile_cont(expression, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont', 'ml_warehouse')(expression, fraction)) }}
{%- endmacro %}

{% macro duckdb__percentile_cont(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}

{% macro spark__percentile_cont(expression, fraction) -%}
    percentile({{ expression }}, {{ fraction }})
{%- endmacro %}

{% macro default__percentile_cont(expression, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}


{#
    The quartiles (continuous, as percentile_cont) of `observed_value` in the
    relation `observed`, per the columns `keys` (none: one row): a select of
    the keys, q1 and q3. DuckDB's quantile_cont keeps every value of a group in
    memory, which cannot spill (at 30M values past a 1GB limit); there they come
    from a count per distinct value instead, whose aggregate and window spill:
    the value at each position is the first whose running count passes it, and
    q = v(floor(p)) * (1 - d) + v(ceil(p)) * d, d = p - floor(p), p = q * (n - 1),
    quantile_cont's interpolation (the two may differ in a double's last bit).
#}
{% macro grouped_quartiles(observed, keys) -%}
    {{ return(adapter.dispatch('grouped_quartiles', 'ml_warehouse')(observed, keys)) }}
{%- endmacro %}

{% macro duckdb__grouped_quartiles(observed, keys) -%}
    {%- set listed = keys | join(', ') -%}
    {%- set partition = 'partition by ' ~ listed if keys else '' -%}
    with

    value_counts as (
        select {{ listed ~ ', ' if keys }}observed_value, count(*) as value_count
        from {{ observed }} as observed
        group by {{ listed ~ ', ' if keys }}observed_value
    ),

    positioned as (
        select
            {{ listed ~ ', ' if keys }}observed_value,
            sum(value_count) over (
                {{ partition }} order by observed_value rows between unbounded preceding and current row
            ) as counted_through,
            sum(value_count) over ({{ partition }}) as total
        from value_counts
    ),

    picked as (
        select
            {{ listed ~ ', ' if keys }}max(0.25 * (total - 1)) as p1,
            max(0.75 * (total - 1)) as p3,
            min(case when counted_through > floor(0.25 * (total - 1)) then observed_value end) as q1_low,
            min(case when counted_through > ceil(0.25 * (total - 1)) then observed_value end) as q1_high,
            min(case when counted_through > floor(0.75 * (total - 1)) then observed_value end) as q3_low,
            min(case when counted_through > ceil(0.75 * (total - 1)) then observed_value end) as q3_high
        from positioned
        {{ 'group by ' ~ listed if keys }}
    )

    select
        {{ listed ~ ', ' if keys }}q1_low * (1 - (p1 - floor(p1))) + q1_high * (p1 - floor(p1)) as q1,
        q3_low * (1 - (p3 - floor(p3))) + q3_high * (p3 - floor(p3)) as q3
    from picked
{%- endmacro %}

{% macro default__grouped_quartiles(observed, keys) -%}
    select
        {{ keys | join(', ') ~ ', ' if keys }}{{ ml_warehouse.percentile_cont('observed_value', 0.25) }} as q1,
        {{ ml_warehouse.percentile_cont('observed_value', 0.75) }} as q3
    from {{ observed }} as observed
    {{ 'group by ' ~ keys | join(', ') if keys }}
{%- endmacro %}


{# 8-byte float: dbt.type_float() is a 4-byte FLOAT on DuckDB. #}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'ml_warehouse')()) }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{#
    round_double(expression, decimals=var('float_decimals', 6)): a computed 8-byte float
    (a mean, a sum, a quantile) rounded to `decimals` places, so that 4.025 is stored and
    served as 4.025 and not as 4.0249999999999995. PostgreSQL rounds numerics only.
#}
{% macro round_double(expression, decimals=none) -%}
    {%- set places = decimals if decimals is not none else var('float_decimals', 6) -%}
    {{ return(adapter.dispatch('round_double', 'ml_warehouse')(expression, places)) }}
{%- endmacro %}

{% macro default__round_double(expression, decimals) -%}
    round({{ expression }}, {{ decimals }})
{%- endmacro %}

{% macro postgres__round_double(expression, decimals) -%}
    cast(round(cast({{ expression }} as numeric), {{ decimals }}) as double precision)
{%- endmacro %}


{#
    parse_date(expression, format) / parse_timestamp(expression, format, tz='UTC'):
    text written in a strptime `format` (`Jan 1 2000` is '%b %d %Y') as a date, or as
    the UTC instant of a wall time in `tz`; null when the text does not fit. The
    scaffold writes them for dates and times not in ISO form. DuckDB only: on another
    engine, cast such a column in the model yourself.
#}
{% macro parse_date(expression, format) -%}
    {{ return(adapter.dispatch('parse_date', 'ml_warehouse')(expression, format)) }}
{%- endmacro %}

{% macro duckdb__parse_date(expression, format) -%}
    cast(try_strptime({{ expression }}, '{{ format }}') as date)
{%- endmacro %}

{% macro default__parse_date(expression, format) -%}
    {{ exceptions.raise_compiler_error("ml_warehouse.parse_date('" ~ format ~ "') is written for DuckDB: cast this column in the model for " ~ target.type) }}
{%- endmacro %}

{% macro parse_timestamp(expression, format, tz='UTC') -%}
    {{ return(adapter.dispatch('parse_timestamp', 'ml_warehouse')(expression, format, tz)) }}
{%- endmacro %}

{% macro duckdb__parse_timestamp(expression, format, tz='UTC') -%}
    timezone('UTC', timezone('{{ tz }}', try_strptime({{ expression }}, '{{ format }}')))
{%- endmacro %}

{% macro default__parse_timestamp(expression, format, tz='UTC') -%}
    {{ exceptions.raise_compiler_error("ml_warehouse.parse_timestamp('" ~ format ~ "') is written for DuckDB: cast this column in the model for " ~ target.type) }}
{%- endmacro %}

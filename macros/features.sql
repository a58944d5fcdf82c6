{#
    The sample domain's feature logic (the marts' age bands, email checks and
    per-user activity); the generic pieces (IQR fences, point in time, day
    parts) come from the tool's package, ml_warehouse.
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
    coalesce({{ ml_warehouse.regexp_like(email, var('email_pattern')) }}, false)
{%- endmacro %}


{# Lower-cased part after the @, null when there is no @. #}
{% macro email_domain(email) -%}
    case
        when {{ email }} like '%@%'
            then lower({{ dbt.split_part(email, "'@'", 2) }})
    end
{%- endmacro %}


{#
    Per-user activity as of `as_of`, as CTEs ending in `user_activity`: event
    counts (in total and per category), value mean and standard deviation,
    order count and amount, and the instants of the last event and order. Only
    events that occurred and orders created at or before `as_of` count.
    `events` and `orders`: the valid events and orders (CTE names). `users`: a
    CTE of user_ids to compute (none: every user with events or orders); a
    listed user with no activity gets a row of zeros, so a merge overwrites
    what it had.
    Shared by int_user_activity (stored, incremental) and user_features (a
    point in time computed in full from the marts, as the training-set export
    does on the published file).
#}
{% macro user_activity(as_of, events, orders, users=none) -%}
activity_events as (

    select user_id, category, value, occurred_at
    from {{ events }}
    where occurred_at <= {{ as_of }}
    {%- if users %}
        {#- `is not null` changes no result; with it DuckDB builds the join's hash table on
            the listed users, not on every event (252 users of 10M events: 0.22 s, not 0.66) #}
        and user_id in (select user_id from {{ users }} where user_id is not null)
    {%- endif %}

),

activity_orders as (

    select user_id, amount, created_at
    from {{ orders }}
    where created_at <= {{ as_of }}
    {%- if users %}
        and user_id in (select user_id from {{ users }} where user_id is not null)
    {%- endif %}

),

event_features as (

    select
        user_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as event_count,
        {% for category in var('event_categories') %}
            cast(sum(case when category = '{{ category }}' then 1 else 0 end) as {{ dbt.type_bigint() }})
                as event_count_{{ category }},
        {% endfor %}
        max(occurred_at) as last_event_at,
        {{ ml_warehouse.round_double('avg(value)') }} as value_mean,
        {{ ml_warehouse.round_double('stddev_samp(value)') }} as value_std

    from activity_events
    group by user_id

),

order_features as (

    select
        user_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as order_count,
        {{ ml_warehouse.round_double('sum(amount)') }} as order_amount_total,
        max(created_at) as last_order_at

    from activity_orders
    group by user_id

),

activity_users as (

    {%- if users %}
        select distinct user_id from {{ users }}
    {%- else %}
        select user_id from event_features
        union
        select user_id from order_features
    {%- endif %}

),

user_activity as (

    select
        activity_users.user_id,
        coalesce(event_features.event_count, 0) as event_count,
        {% for category in var('event_categories') %}
            coalesce(event_features.event_count_{{ category }}, 0) as event_count_{{ category }},
        {% endfor %}
        event_features.value_mean,
        event_features.value_std,
        event_features.last_event_at,
        coalesce(order_features.order_count, 0) as order_count,
        coalesce(order_features.order_amount_total, 0.0) as order_amount_total,
        order_features.last_order_at

    from activity_users
    left join event_features
        on activity_users.user_id = event_features.user_id
    left join order_features
        on activity_users.user_id = order_features.user_id

)
{%- endmacro %}


{#
    What int_user_activity's last build stored, as SQL literals: 'as_of', its
    features_as_of, and 'events_loaded_through', the newest loaded_at of the
    events it read; none when the table is empty. 'operator' is '>' (events
    loaded after it are new), or '>=' when stg_events__events now holds more
    rows of that instant than the build saw: a load that was still arriving.
#}
{% macro user_activity_watermark() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set sql -%}
        select max(features_as_of), max(events_loaded_through), max(events_loaded_through_rows)
        from {{ this }}
        where events_loaded_through = (select max(events_loaded_through) from {{ this }})
    {%- endset -%}
    {%- set row = run_query(sql).rows[0] -%}
    {%- if row[0] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set literals = [] -%}
    {%- for value in row[:2] -%}
        {%- do literals.append("cast('" ~ value.isoformat(sep=' ') ~ "' as " ~ dbt.type_timestamp() ~ ")") -%}
    {%- endfor -%}
    {%- set counted = 'select count(*) from ' ~ ref('stg_events__events') ~ ' where loaded_at = ' ~ literals[1] -%}
    {{ return({
        'as_of': literals[0],
        'events_loaded_through': literals[1],
        'operator': '>=' if run_query(counted).columns[0].values()[0] != row[2] else '>',
    }) }}
{%- endmacro %}


{#
    True when int_user_activity's last build was for this `as_of` literal (in
    this build, before user_features): every row it holds is then correct as of
    it, and user_features reads them rather than computing the activity again.
#}
{% macro user_activity_is_stored(as_of) -%}
    {#- parsing renders the full computation, so dbt records what it reads -#}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = ref('int_user_activity') -%}
    {%- if load_relation(relation) is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set sql = 'select coalesce(max(features_as_of) = ' ~ as_of ~ ', false) from ' ~ relation -%}
    {{ return(run_query(sql).columns[0].values()[0]) }}
{%- endmacro %}

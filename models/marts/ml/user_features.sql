-- One row per user with model features as of a point in time (var
-- features_as_of, default the run's start): only events that occurred and
-- orders created at or before it count.
{%- set as_of = features_as_of() %}

with

users as (

    select * from {{ ref('dim_users') }}

),

events as (

    select * from {{ ref('fct_events') }}
    where occurred_at <= {{ as_of }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where created_at <= {{ as_of }}

),

event_features as (

    select
        user_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as event_count,
        {%- for category in var('event_categories') %}
            cast(sum(case when category = '{{ category }}' then 1 else 0 end) as {{ dbt.type_bigint() }})
                as event_count_{{ category }},
        {%- endfor %}
        avg(value) as value_mean,
        stddev_samp(value) as value_std,
        max(occurred_at) as last_event_at

    from events
    group by user_id

),

order_features as (

    select
        user_id,
        cast(count(*) as {{ dbt.type_bigint() }}) as order_count,
        sum(amount) as order_amount_total,
        max(created_at) as last_order_at

    from orders
    group by user_id

),

final as (

    select
        -- ids
        users.user_id,

        -- user attributes
        users.age_imputed,
        users.age_group,
        users.email_domain,
        users.is_personal_email,
        users.country,

        -- events
        coalesce(event_features.event_count, 0) as event_count,
        {%- for category in var('event_categories') %}
            coalesce(event_features.event_count_{{ category }}, 0) as event_count_{{ category }},
        {%- endfor %}
        event_features.value_mean,
        event_features.value_std,

        -- orders
        coalesce(order_features.order_count, 0) as order_count,
        coalesce(order_features.order_amount_total, 0.0) as order_amount_total,

        -- recency
        cast({{ dbt.datediff('event_features.last_event_at', as_of, 'day') }} as {{ dbt.type_bigint() }})
            as days_since_last_event,
        cast({{ dbt.datediff('order_features.last_order_at', as_of, 'day') }} as {{ dbt.type_bigint() }})
            as days_since_last_order,
        {{ as_of }} as features_as_of

    from users
    left join event_features
        on users.user_id = event_features.user_id
    left join order_features
        on users.user_id = order_features.user_id

)

select * from final

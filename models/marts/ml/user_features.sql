-- One row per user with model features as of a point in time (var
-- features_as_of, default the run's start): only events that occurred and
-- orders created at or before it count.
--
-- A view: the counts come from int_user_activity, which a run updates only for
-- the users whose activity changed, and the days_since_* columns are derived
-- here from its instants, so the passing of time rewrites no stored row. When
-- int_user_activity holds another point in time (a `dbt run` of this model
-- alone with its own features_as_of, or the training-set export, which
-- compiles it against no data), the activity is computed here in full.
-- depends_on: {{ ref('int_user_activity') }}
{{ config(materialized='view') }}
{%- set as_of = ml_warehouse.features_as_of() %}
{%- set stored = user_activity_is_stored(as_of) %}

with

users as (

    select * from {{ ref('dim_users') }}

),

{% if stored %}
    user_activity as (

        select * from {{ ref('int_user_activity') }}

    ),
{% else %}
    events as (

        select * from {{ ref('fct_events') }}

    ),

    orders as (

        select * from {{ ref('fct_orders') }}

    ),

    {{ user_activity(as_of, 'events', 'orders') }},
{% endif %}

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
        coalesce(user_activity.event_count, 0) as event_count,
        {%- for category in var('event_categories') %}
            coalesce(user_activity.event_count_{{ category }}, 0) as event_count_{{ category }},
        {%- endfor %}
        user_activity.value_mean,
        user_activity.value_std,

        -- orders
        coalesce(user_activity.order_count, 0) as order_count,
        coalesce(user_activity.order_amount_total, 0.0) as order_amount_total,

        -- recency
        cast({{ dbt.datediff('user_activity.last_event_at', as_of, 'day') }} as {{ dbt.type_bigint() }})
            as days_since_last_event,
        cast({{ dbt.datediff('user_activity.last_order_at', as_of, 'day') }} as {{ dbt.type_bigint() }})
            as days_since_last_order,
        {{ as_of }} as features_as_of

    from users
    left join user_activity
        on users.user_id = user_activity.user_id

)

select * from final

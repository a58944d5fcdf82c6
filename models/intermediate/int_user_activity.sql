{#
    One row per user with events or orders: what user_features counts, and the
    instants of the last event and order (user_features derives its days_since_*
    columns from them, so the passing of time rewrites no row here).

    Incremental (merge on user_id): a run recomputes, in full, only the users
    whose activity can have changed since the last build:
    - events (raw only grows): the users of every copy of an event_id with a
      copy loaded since then (a re-sent event can move between users), of the
      events that occurred between the last build's features_as_of and this
      one's (either way: the time can move back), and in a backfill of those in
      its range;
    - orders (merged on order_id, so an order can move between users, and an
      order of an unknown user becomes valid when the user arrives): the users
      whose order figures (as of this features_as_of) differ from the stored
      ones, from one pass over the valid orders.
    A user left with no activity gets a row of zeros, removed after the merge
    (Spark's Parquet tables, rebuilt whole, have neither).
#}
{{
    config(
        materialized=ml_warehouse.merge_materialization(),
        incremental_strategy='merge',
        unique_key='user_id',
        on_schema_change='append_new_columns',
        post_hook=(
            "{% if is_incremental() %}"
            "delete from {{ this }} where event_count = 0 and order_count = 0"
            "{% endif %}"
        ),
    )
}}
{%- set as_of = ml_warehouse.features_as_of() %}
{%- set last = user_activity_watermark() if is_incremental() else none %}

with

events as (

    select * from {{ ref('int_events_enriched') }}

),

-- the rows of fct_orders
orders as (

    select * from {{ ref('int_orders_validated') }}
    where quarantine_reason is null

),

{% if last is not none %}
    new_event_ids as (

        select event_id from {{ ref('stg_events__events') }}
        where loaded_at {{ last.operator }} {{ last.events_loaded_through }}

    ),

    stored as (

        select * from {{ this }}

    ),

    current_orders as (

        select
            user_id,
            count(*) as order_count,
            sum(amount) as order_amount_total,
            max(created_at) as last_order_at

        from orders
        where created_at <= {{ as_of }}
        group by user_id

    ),

    changed_users as (

        select user_id from {{ ref('stg_events__events') }}
        where event_id in (select new_event_ids.event_id from new_event_ids)
        union
        select user_id from events
        where
            occurred_at > least({{ last.as_of }}, {{ as_of }})
            and occurred_at <= greatest({{ last.as_of }}, {{ as_of }})
        {%- if ml_warehouse.is_backfill() %}
            union
            select user_id from events
            where {{ ml_warehouse.backfill_range_filter('occurred_at') }}
        {%- endif %}
        union
        select coalesce(current_orders.user_id, stored.user_id) as user_id
        from current_orders
        full outer join stored
            on current_orders.user_id = stored.user_id
        where
            coalesce(current_orders.order_count, 0) <> coalesce(stored.order_count, 0)
            or coalesce(current_orders.order_amount_total, 0) <> coalesce(stored.order_amount_total, 0)
            or current_orders.last_order_at is distinct from stored.last_order_at

    ),

    {{ user_activity(as_of, 'events', 'orders', 'changed_users') }},
{% else %}
    {{ user_activity(as_of, 'events', 'orders') }},
{% endif %}

loaded as (

    select
        max(loaded_at) as events_loaded_through,
        cast(count(*) as {{ dbt.type_bigint() }}) as events_loaded_through_rows

    from {{ ref('stg_events__events') }}
    where loaded_at = (select max(newest.loaded_at) from {{ ref('stg_events__events') }} as newest)

),

final as (

    select
        user_activity.*,
        {{ as_of }} as features_as_of,
        loaded.events_loaded_through,
        loaded.events_loaded_through_rows

    from user_activity
    cross join loaded
    where user_activity.user_id is not null

)

select * from final

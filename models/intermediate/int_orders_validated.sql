-- Orders with the reason they cannot reach fct_orders (null when they can):
-- missing_key (no order_id or user_id), duplicate (older copy of an
-- order_id), invalid_amount (NaN or an infinity), unknown_user (user_id not
-- among the users in dim_users).
with

orders as (

    select * from {{ ref('stg_orders__orders') }}

),

users as (

    select user_id from {{ ref('stg_users__users') }}

),

final as (

    select
        orders.*,
        case
            when orders.order_id is null or orders.user_id is null then 'missing_key'
            when orders.version_rank > 1 then 'duplicate'
            when orders.has_invalid_amount then 'invalid_amount'
            when users.user_id is null then 'unknown_user'
        end as quarantine_reason

    from orders
    left join users
        on orders.user_id = users.user_id

)

select * from final

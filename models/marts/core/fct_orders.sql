-- One row per order whose user is known, with its product's category.
with

orders as (

    select * from {{ ref('int_orders_validated') }}
    where quarantine_reason is null

),

products as (

    select * from {{ ref('stg_products__products') }}

),

final as (

    select
        -- ids
        orders.order_id,
        orders.user_id,
        orders.product_id,

        -- attributes
        products.product_category,
        orders.amount,
        orders.currency,
        orders.status,

        -- timestamps
        orders.created_at,
        orders.updated_at

    from orders
    left join products
        on orders.product_id = products.product_id

)

select * from final

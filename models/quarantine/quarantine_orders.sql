-- Raw orders kept out of fct_orders, with the reason: missing_key,
-- duplicate, invalid_amount or unknown_user.
with

orders as (

    select * from {{ ref('int_orders_validated') }}

),

final as (

    select
        quarantine_reason,
        order_id,
        user_id,
        product_id,
        amount,
        currency,
        status,
        created_at,
        updated_at,
        loaded_at

    from orders
    where quarantine_reason is not null

)

select * from final

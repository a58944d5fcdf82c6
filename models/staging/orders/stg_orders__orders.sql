-- Orders as received (raw is typed and merged on order_id): renamed,
-- normalised codes, timestamps in UTC, the latest version per order_id first.
with

source as (

    select * from {{ source('orders', 'orders') }}

),

renamed as (

    select
        -- ids
        order_id,
        user_id,
        product_id,

        -- numerics: NaN or an infinity is no amount (the order is quarantined)
        case
            when {{ ml_warehouse.is_finite('amount') }} then cast(amount as {{ ml_warehouse.type_double() }})
        end as amount,
        coalesce(not {{ ml_warehouse.is_finite('amount') }}, false) as has_invalid_amount,

        -- attributes
        upper(trim(currency)) as currency,
        lower(trim(status)) as status,

        -- timestamps (UTC)
        {{ ml_warehouse.to_utc_timestamp('created_at', safe=false) }} as created_at,
        {{ ml_warehouse.to_utc_timestamp('updated_at', safe=false) }} as updated_at,
        {{ ml_warehouse.to_utc_timestamp('_loaded_at', safe=false) }} as loaded_at

    from source

),

final as (

    select
        *,
        row_number() over (
            partition by order_id
            order by updated_at desc, loaded_at desc
        ) as version_rank

    from renamed

)

select * from final

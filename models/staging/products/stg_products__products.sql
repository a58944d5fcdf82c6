-- Products as received (raw is typed and merged on product_id), latest
-- version per product_id.
with

source as (

    select * from {{ source('products', 'products') }}

),

renamed as (

    select
        -- ids
        product_id,

        -- attributes
        trim(name) as product_name,
        lower(trim(category)) as product_category,

        -- numerics
        cast(price as {{ ml_warehouse.type_double() }}) as price,

        -- timestamps (UTC)
        {{ ml_warehouse.to_utc_timestamp('updated_at', safe=false) }} as updated_at,
        {{ ml_warehouse.to_utc_timestamp('_loaded_at', safe=false) }} as loaded_at

    from source

),

ranked as (

    select
        *,
        row_number() over (
            partition by product_id
            order by updated_at desc, loaded_at desc
        ) as version_rank

    from renamed

),

final as (

    select
        product_id,
        product_name,
        product_category,
        price,
        updated_at,
        loaded_at

    from ranked
    where version_rank = 1

)

select * from final

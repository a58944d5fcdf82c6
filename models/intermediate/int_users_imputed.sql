-- Mean imputation of the one numeric user feature: a missing (or nulled)
-- age becomes the mean of the valid ages.
with

users as (

    select * from {{ ref('int_users_validated') }}

),

final as (

    select
        *,
        coalesce(
            cast(age as {{ ml_warehouse.type_double() }}),
            {{ ml_warehouse.round_double('avg(cast(age as ' ~ ml_warehouse.type_double() ~ ')) over ()') }}
        ) as age_imputed,
        age is null as is_age_imputed

    from users

)

select * from final

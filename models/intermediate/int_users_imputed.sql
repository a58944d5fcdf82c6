-- Mean imputation of the one numeric user feature: a missing (or nulled)
-- age becomes the mean of the valid ages.
-- A view: row-wise, with one aggregate, computed where dim_users reads it.
{{ config(materialized='view') }}

with

users as (

    select * from {{ ref('int_users_validated') }}

),

-- one aggregate, not a window over every row (which DuckDB runs in one partition)
mean_age as (

    select
        {{ ml_warehouse.round_double('avg(cast(age as ' ~ ml_warehouse.type_double() ~ '))') }} as age_mean

    from users

),

final as (

    select
        users.*,
        coalesce(cast(users.age as {{ ml_warehouse.type_double() }}), mean_age.age_mean) as age_imputed,
        users.age is null as is_age_imputed

    from users
    cross join mean_age

)

select * from final

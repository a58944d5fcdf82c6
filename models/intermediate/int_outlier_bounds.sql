-- 1.5 x IQR (Tukey) outlier bounds for every numeric column that feeds the
-- marts, one row per model and column; the monitor and the marts read them.
with

users as (

    select * from {{ ref('int_users_validated') }}

),

events as (

    select * from {{ ref('int_events_enriched') }}

),

orders as (

    select * from {{ ref('int_orders_validated') }}
    where quarantine_reason is null

),

products as (

    select * from {{ ref('stg_products__products') }}

),

bounds as (

    select
        'dim_users' as model_name,
        'age' as column_name,
        count(age) as value_count,
        {{ iqr_bounds('age') }}
    from users

    union all

    select
        'fct_events' as model_name,
        'value' as column_name,
        count(value) as value_count,
        {{ iqr_bounds('value') }}
    from events

    union all

    select
        'fct_orders' as model_name,
        'amount' as column_name,
        count(amount) as value_count,
        {{ iqr_bounds('amount') }}
    from orders

    union all

    select
        'stg_products__products' as model_name,
        'price' as column_name,
        count(price) as value_count,
        {{ iqr_bounds('price') }}
    from products

),

final as (

    select * from bounds

)

select * from final

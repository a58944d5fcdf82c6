-- Every raw row is in its mart, a superseded version (users history) or in
-- quarantine: fails with one row per entity whose counts do not add up.
with

accounting as (

    select
        'users' as entity,
        (select count(*) from {{ source('users', 'users') }}) as raw_rows,
        (select count(*) from {{ ref('dim_users') }}) as mart_rows,
        (
            select count(*) from {{ ref('int_users_versioned') }}
            where not is_current
        ) as superseded_rows,
        (select count(*) from {{ ref('quarantine_users') }}) as quarantined_rows

    union all

    select
        'events' as entity,
        (select count(*) from {{ source('events', 'events') }}) as raw_rows,
        (select count(*) from {{ ref('fct_events') }}) as mart_rows,
        0 as superseded_rows,
        (select count(*) from {{ ref('quarantine_events') }}) as quarantined_rows

    union all

    select
        'orders' as entity,
        (select count(*) from {{ source('orders', 'orders') }}) as raw_rows,
        (select count(*) from {{ ref('fct_orders') }}) as mart_rows,
        0 as superseded_rows,
        (select count(*) from {{ ref('quarantine_orders') }}) as quarantined_rows

)

select *
from accounting
where raw_rows <> mart_rows + superseded_rows + quarantined_rows

-- Attribute validation for the latest version of each user: bad values are
-- nulled and flagged, never dropped.
-- A view: row-wise expressions, computed where dim_users reads them.
{{ config(materialized='view') }}

with

users as (

    select * from {{ ref('stg_users__users') }}

),

validated as (

    select
        *,
        {{ is_valid_email('email') }} as is_valid_email,
        coalesce(
            age_number >= {{ var('age_min') }} and age_number <= {{ var('age_max') }},
            false
        ) as is_valid_age

    from users

),

final as (

    select
        -- ids
        user_id,

        -- attributes
        name,
        case when is_valid_email then email end as email,
        case when is_valid_email then {{ email_domain('email') }} end as email_domain,
        country,

        -- numerics
        case when is_valid_age then age_number end as age,

        -- flags
        is_valid_email,
        has_email_needing_cleanup,
        is_valid_age,
        age_text is null as has_missing_age,
        coalesce(age_text is not null and age_number is null, false) as has_non_numeric_age,
        coalesce(age_number is not null and not is_valid_age, false) as has_impossible_age,

        -- timestamps
        signup_at,
        updated_at

    from validated

)

select * from final

-- The latest valid version of each user: one row per user_id.
-- A view: a filter of the versions table, which dim_users reads through
-- int_users_validated and int_users_imputed (views too) in one pass.
{{ config(materialized='view') }}

with

user_versions as (

    select * from {{ ref('stg_users__user_versions') }}

),

final as (

    select
        -- ids
        user_id,
        row_key,

        -- attributes
        name,
        email,
        has_email_needing_cleanup,
        age_text,
        age_number,
        country,

        -- timestamps
        signup_at,
        updated_at,

        -- lineage
        source_file,
        source_line,
        loaded_at

    from user_versions
    where version_status = 'latest'

)

select * from final

-- Raw user rows kept out of dim_users and out of the version history, with
-- the reason: missing_key, invalid_timestamp or duplicate.
with

user_versions as (

    select * from {{ ref('stg_users__user_versions') }}

),

final as (

    select
        version_status as quarantine_reason,

        -- lineage
        row_key,
        source_file,
        source_line,

        -- values as sent
        user_id_raw as user_id,
        name,
        email_raw as email,
        age_raw as age,
        country,
        signup_at_raw as signup_at,
        updated_at_raw as updated_at,
        loaded_at

    from user_versions
    where version_status in ('missing_key', 'invalid_timestamp', 'duplicate')

)

select * from final

-- History of every valid user version: the latest one (in dim_users) and the
-- superseded ones, with validity intervals [valid_from, valid_to).
with

user_versions as (

    select * from {{ ref('stg_users__user_versions') }}

),

final as (

    select
        -- ids
        user_id,
        row_key,
        version_rank,

        -- attributes (cleaned, not validated)
        name,
        email,
        age_number as age,
        country,

        -- timestamps
        signup_at,
        updated_at as valid_from,
        lag(updated_at) over (
            partition by user_id order by version_rank
        ) as valid_to,
        version_status = 'latest' as is_current,

        -- lineage
        source_file,
        source_line,
        loaded_at

    from user_versions
    where version_status in ('latest', 'superseded')

)

select * from final

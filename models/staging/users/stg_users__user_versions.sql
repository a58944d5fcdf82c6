-- Every raw users row, cast and cleaned, classified in the order
-- missing_key > invalid_timestamp > duplicate > superseded > latest.
with

source as (

    select * from {{ source('users', 'users') }}

),

numbered as (

    select
        user_id as user_id_raw,
        name as name_raw,
        email as email_raw,
        age as age_raw,
        country as country_raw,
        signup_at as signup_at_raw,
        updated_at as updated_at_raw,
        _row_key as row_key,
        _source_file as source_file,
        _source_line as source_line,
        _loaded_at as loaded_at_raw,
        -- an exact duplicate repeats every source column of an earlier line
        row_number() over (
            partition by user_id, name, email, age, country, signup_at, updated_at
            order by _source_file, _source_line
        ) as copy_number

    from source

),

renamed as (

    select
        -- ids
        {{ ml_warehouse.safe_cast('trim(user_id_raw)', dbt.type_bigint()) }} as user_id,
        row_key,

        -- attributes
        trim(name_raw) as name,
        nullif(lower(trim(email_raw)), '') as email,
        coalesce(email_raw <> lower(trim(email_raw)), false) as has_email_needing_cleanup,
        nullif(trim(age_raw), '') as age_text,
        {{ ml_warehouse.safe_cast("nullif(trim(age_raw), '')", dbt.type_int()) }} as age_number,
        nullif(upper(trim(country_raw)), '') as country,

        -- timestamps (UTC)
        {{ ml_warehouse.to_utc_timestamp("nullif(trim(signup_at_raw), '')") }} as signup_at,
        {{ ml_warehouse.to_utc_timestamp("nullif(trim(updated_at_raw), '')") }} as updated_at,

        -- raw values, kept for quarantine and audits
        user_id_raw,
        email_raw,
        age_raw,
        signup_at_raw,
        updated_at_raw,

        -- lineage
        source_file,
        source_line,
        {{ ml_warehouse.to_utc_timestamp('loaded_at_raw', safe=false) }} as loaded_at,
        copy_number

    from numbered

),

classified as (

    select
        *,
        case
            when user_id is null then 'missing_key'
            when updated_at is null then 'invalid_timestamp'
            when copy_number > 1 then 'duplicate'
            else 'version'
        end as row_class

    from renamed

),

ranked as (

    select
        *,
        row_number() over (
            partition by user_id, row_class
            order by updated_at desc, source_file desc, source_line desc
        ) as version_rank

    from classified

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

        -- classification
        case
            when row_class <> 'version' then row_class
            when version_rank = 1 then 'latest'
            else 'superseded'
        end as version_status,
        case when row_class = 'version' then version_rank end as version_rank,

        -- raw values
        user_id_raw,
        email_raw,
        age_raw,
        signup_at_raw,
        updated_at_raw,

        -- lineage
        source_file,
        source_line,
        loaded_at

    from ranked

)

select * from final

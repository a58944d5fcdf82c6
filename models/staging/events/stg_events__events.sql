-- Every raw event, cast (text as sent -> typed) and classified: rows with no
-- event_id, an unparsable occurred_at or a repeated event_id are marked for
-- quarantine; everything else is 'valid'.
with

source as (

    select * from {{ source('events', 'events') }}

),

renamed as (

    select
        -- ids
        nullif(trim(event_id), '') as event_id,
        {{ safe_cast('trim(user_id)', dbt.type_bigint()) }} as user_id,

        -- attributes
        nullif(lower(trim(category)), '') as category,
        {{ safe_cast('trim(value)', type_double()) }} as value,

        -- timestamps (UTC)
        {{ to_utc_timestamp("nullif(trim(occurred_at), '')") }} as occurred_at,

        -- raw values, kept for quarantine and audits
        user_id as user_id_raw,
        value as value_raw,
        occurred_at as occurred_at_raw,

        -- lineage
        _segment as segment,
        _line as segment_line,
        {{ to_utc_timestamp('_loaded_at', safe=false) }} as loaded_at

    from source

),

ranked as (

    select
        *,
        {{ event_copy_number() }} as copy_number

    from renamed

),

final as (

    select
        -- ids
        event_id,
        user_id,

        -- attributes
        category,
        value,
        coalesce(value is null and value_raw is not null, false) as has_non_numeric_value,

        -- timestamps
        occurred_at,

        -- classification
        {{ event_status() }} as event_status,

        -- raw values
        user_id_raw,
        value_raw,
        occurred_at_raw,

        -- lineage
        segment,
        segment_line,
        loaded_at

    from ranked

)

select * from final

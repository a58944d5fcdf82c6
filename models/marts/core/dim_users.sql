-- One row per user: the latest valid version, validated, imputed, banded.
with

users as (

    select * from {{ ref('int_users_imputed') }}

),

personal_email_domains as (

    select * from {{ ref('personal_email_domains') }}

),

countries as (

    select * from {{ ref('countries') }}

),

final as (

    select
        -- ids
        users.user_id,

        -- attributes
        users.name,
        users.email,
        users.email_domain,
        users.is_valid_email,
        personal_email_domains.email_domain is not null as is_personal_email,
        users.has_email_needing_cleanup,
        users.country,
        countries.country_name,

        -- age
        users.age,
        users.age_imputed,
        users.is_age_imputed,
        {{ age_group('users.age_imputed') }} as age_group,
        users.has_missing_age,
        users.has_non_numeric_age,
        users.has_impossible_age,

        -- timestamps
        users.signup_at,
        users.updated_at

    from users
    left join personal_email_domains
        on users.email_domain = personal_email_domains.email_domain
    left join countries
        on users.country = countries.country_code

)

select * from final

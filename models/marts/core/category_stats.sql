-- One row per event category over all valid events: the statistics that
-- fct_events repeats on each event and its 1.5 x IQR outlier fences.
with

events as (

    select * from {{ ref('int_events_enriched') }}

),

final as (

    select
        category,
        {{ ml_warehouse.round_double('avg(value)') }} as value_mean,
        {{ ml_warehouse.round_double('stddev_samp(value)') }} as value_std,
        cast(count(*) as {{ dbt.type_bigint() }}) as event_count,
        {{ ml_warehouse.iqr_bounds('value', prefix='value_') }}

    from events
    group by category

)

select * from final

-- sqlfluff:indentation:template_blocks_indent:false
{#
    matches_regex: non-null values match `pattern` (macro regexp_like; anchor
    it with ^...$ for a whole-value match). Row level: returns every
    non-matching row with the summary columns quality_value_count,
    quality_failing_count, quality_passing_share, quality_mostly and
    quality_over_tolerance. Fails (severity error unless configured) only when
    the share of matching non-null values is below `mostly` (default 1.0);
    exactly `mostly` passes. `failures` = the non-matching rows then, else 0.
    Nulls are not judged; an empty table passes. Failing rows are stored in
    the audit schema.
#}
{% test matches_regex(model, column_name, pattern, mostly=1.0) %}
{{ config(
    severity='error',
    store_failures=true,
    schema='audit',
    fail_calc='coalesce(sum(quality_over_tolerance), 0)',
) }}

with

judged as (

    select
        *,
        case when {{ regexp_like(column_name, pattern) }} then 0 else 1 end as quality_is_failing

    from {{ model }}
    where {{ column_name }} is not null

),

{{ quality_mostly_tail(mostly) }}

{% endtest %}

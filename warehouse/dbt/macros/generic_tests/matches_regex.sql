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

{{ ml_warehouse.quality_row_check(model, column_name, 'not (' ~ ml_warehouse.regexp_like(column_name, pattern) ~ ')', mostly) }}

{% endtest %}

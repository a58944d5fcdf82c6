-- sqlfluff:indentation:template_blocks_indent:false
{#
    rows_accounted_for: every row of a raw table is in exactly one place
    downstream - its mart, a superseded version, or quarantine. Declared on a
    source table (the raw rows); `mart`, `superseded` and `quarantine` are
    relations (ref(...)), each narrowed by an optional where clause, so one
    model can hold several of them (a staging model with status columns).
    One row when raw = mart + superseded + quarantined does not hold, with
    the four counts; severity error.
#}
{% test rows_accounted_for(
    model,
    mart,
    mart_where=none,
    superseded=none,
    superseded_where=none,
    quarantine=none,
    quarantine_where=none
) %}
{{ config(severity='error') }}

{#- each part's count: 0 when not given, else its rows (matching `where`) -#}
{%- set counted = {} %}
{%- for name, relation, where in [
    ('mart_rows', mart, mart_where),
    ('superseded_rows', superseded, superseded_where),
    ('quarantined_rows', quarantine, quarantine_where),
] %}
    {%- set filter = ' where ' ~ where if where else '' %}
    {%- set sql = '0' if relation is none else '(select count(*) from ' ~ relation ~ filter ~ ')' %}
    {%- do counted.update({name: sql}) %}
{%- endfor %}

with

counts as (

    select
        (select count(*) from {{ model }}) as raw_rows,
        {{ counted['mart_rows'] }} as mart_rows,
        {{ counted['superseded_rows'] }} as superseded_rows,
        {{ counted['quarantined_rows'] }} as quarantined_rows

)

select *
from counts
where raw_rows <> mart_rows + superseded_rows + quarantined_rows

{% endtest %}

/* Per source (and per component for the mapping checks): what was extracted when, how
much, what was quarantined, and how well events map to the catalog. One row per
source and check.
grain: source, check_name, entity_ref */
with extracts as (
    select
        source,
        max(extracted_at) as last_extracted_at,
        max(partition_date) as last_partition,
        count(*) as partitions_loaded,
        sum(rows_quarantined) as rows_quarantined
    from dora_raw.extract_log
    group by source
),
row_counts as (
    select source, 'deployments' as table_name, count(*) as row_count from dora_raw.deployments group by source
    union all
    select source, 'pull_requests', count(*) from dora_raw.pull_requests group by source
    union all
    select source, 'incidents', count(*) from dora_raw.incidents group by source
    union all
    select source, 'survey_responses', count(*) from dora_raw.survey_responses group by source
    union all
    select source, 'catalog_entities', count(*) from dora_raw.catalog_entities group by source
),
unmapped as (
    select source, count(distinct entity_ref) as unmapped_components, count(*) as unmapped_events
    from (
        select source, entity_ref from dora_staging.stg_deployments where unmapped
        union all
        select split_part(incident_id, ':', 1), entity_ref from dora_staging.stg_incidents where unmapped
    ) as u
    group by source
),
ownership as (
    select
        k.ownership,
        k.meaning,
        count(c.entity_ref) as components
    from (
        values
            ('user', 'catalog components owned by a User: counted for the first of the user''s groups'),
            ('unknown_group', 'catalog components owned by a group the catalog does not hold'),
            ('none', 'catalog components with no owner: in no team''s numbers'),
            ('orphaned', 'orphaned catalog components (backstage.io/orphan): in no team''s numbers'),
            ('orphaned_owner', 'catalog components owned by an orphaned group: in no team''s numbers'),
            ('user_without_group', 'catalog components owned by a User in no catalog group: in no team''s numbers')
    ) as k (ownership, meaning)
    left join dora_staging.stg_catalog_components as c
      on c.ownership = k.ownership
      or (k.ownership = 'user_without_group' and c.ownership = 'user' and c.owner_ref is null)
    group by k.ownership, k.meaning
),
coverage as (
    select
        count(*) filter (where shipped_prs > 0) as linked,
        count(*) as total
    from dora_intermediate.int_deployment_outcomes
)
select
    e.source,                                   -- the source
    'extract' as check_name,                    -- extract | rows:<table> | unmapped | lead_time_coverage | ownership:<kind>
    null::text as entity_ref,                   -- a component, for per-component checks
    e.last_extracted_at,                        -- last successful extract
    e.last_partition,                           -- latest UTC day extracted
    e.partitions_loaded::bigint as value,       -- the check's number
    'partitions loaded; ' || e.rows_quarantined || ' rows quarantined in total' as detail  -- what the number means
from extracts as e
union all
select r.source, 'rows:' || r.table_name, null, e.last_extracted_at, e.last_partition, r.row_count,
       'rows in dora_raw.' || r.table_name
from row_counts as r
left join extracts as e on e.source = r.source
union all
select u.source, 'unmapped', null, e.last_extracted_at, e.last_partition, u.unmapped_events,
       u.unmapped_components || ' services without a catalog entry (fallback refs component:default/<name>)'
from unmapped as u
left join extracts as e on e.source = u.source
union all
select 'all', 'lead_time_coverage', null, null, null, c.linked,
       'of ' || c.total || ' production deployments shipped at least one PR ('
       || coalesce(round(100.0 * c.linked / nullif(c.total, 0), 1)::text, 'n/a') || ' %)'
from coverage as c
union all
select 'backstage', 'ownership:' || o.ownership, null, e.last_extracted_at, e.last_partition, o.components,
       o.meaning
from ownership as o
left join extracts as e on e.source = 'backstage'
union all
select 'all', 'unmapped_component', k.entity_ref, null, null, count(*), 'events naming ' || min(k.key_type) || ' ' || min(k.key)
from dora_staging.stg_deployments as d
join dora_staging.stg_service_keys as k on k.entity_ref = d.entity_ref and k.unmapped
group by k.entity_ref

/* One row per component the metrics cover: every catalog Component plus a fallback ref
for each service that events name and no catalog entry claims.
Its rows change every period of the incremental models that read it (the weeks start at a
component's first event; a first production deployment sets the tiers of quiet weeks):
they hash its rows, and a change rebuilds them in full.
index: entity_ref
hash: content */
with seen as (
    select entity_ref, min(finished_at) as first_event_at
    from dora_staging.stg_deployments
    group by entity_ref
    union all
    select entity_ref, min(merged_at)
    from dora_staging.stg_pull_requests
    group by entity_ref
    union all
    select entity_ref, min(opened_at)
    from dora_staging.stg_incidents
    group by entity_ref
),
first_seen as (
    select entity_ref, min(first_event_at) as first_event_at
    from seen
    group by entity_ref
),
production as (
    select distinct entity_ref
    from dora_staging.stg_deployments
    where is_production and not failed
)
select
    u.entity_ref,                               -- component ref
    c.owner_ref,                                -- owning group; NULL for fallback refs and unowned or orphaned components
    c.entity_ref is not null as in_catalog,     -- false: a fallback ref
    f.first_event_at,                           -- first deployment, PR or incident
    p.entity_ref is not null as has_production_deployments  -- ever deployed to production
from (
    select entity_ref from dora_staging.stg_catalog_components
    union
    select entity_ref from first_seen
) as u
left join dora_staging.stg_catalog_components as c on c.entity_ref = u.entity_ref
left join first_seen as f on f.entity_ref = u.entity_ref
left join production as p on p.entity_ref = u.entity_ref

/* One row per way an event names a service (source key type and key), resolved to a
catalog component: by annotation (github.com/project-slug, argocd/app-name,
pagerduty.com/service-id, opsgenie.com/service-id) or full entity ref first, then by
component name, else a fallback ref component:default/<name>; `unmapped` marks the
fallbacks so data_quality can show them. A key can map to several components.
index: key_type, key */
with keys as (
    select distinct d.service_key_type as key_type, d.service_key as key
    from dora_raw.deployments as d
    union
    select distinct ic.service_key_type, ic.service_key
    from dora_raw.incident_components as ic
    union
    select distinct 'github_repo', p.repository
    from dora_raw.pull_requests as p
    union
    select distinct 'github_repo', c.repository
    from dora_raw.direct_changes as c
),
aliases as (
    select 'entity_ref' as key_type, c.entity_ref as key, c.entity_ref
    from dora_raw.catalog_entities as c
    where c.kind = 'component'
    union all
    select a.key_type, lower(trim(a.key)), c.entity_ref
    from dora_raw.catalog_entities as c
    cross join lateral (
        values
            ('github_repo', c.annotations ->> 'github.com/project-slug'),
            ('argocd_app', c.annotations ->> 'argocd/app-name'),
            ('pagerduty_service', c.annotations ->> 'pagerduty.com/service-id'),
            ('opsgenie_service', c.annotations ->> 'opsgenie.com/service-id')
    ) as a(key_type, key)
    where c.kind = 'component'
      and a.key is not null
),
named as (
    select
        k.key_type,
        k.key,
        lower(regexp_replace(
            case
                when k.key_type in ('github_repo', 'entity_ref') then regexp_replace(k.key, '^.*/', '')
                else k.key
            end,
            '[^A-Za-z0-9_.-]+', '-', 'g'
        )) as fallback_name
    from keys as k
),
matched as (
    select n.key_type, n.key, a.entity_ref
    from named as n
    join aliases as a
      on a.key_type = n.key_type
     and a.key = lower(trim(n.key))
),
by_name as (
    select n.key_type, n.key, c.entity_ref
    from named as n
    join dora_raw.catalog_entities as c
      on c.kind = 'component'
     and c.name = n.fallback_name
    where n.key_type <> 'entity_ref'
      and not exists (select 1 from matched as m where m.key_type = n.key_type and m.key = n.key)
)
select key_type, key, entity_ref, false as unmapped from matched
union all
select key_type, key, entity_ref, false from by_name
union all
select
    n.key_type,                                 -- how the source names the service
    n.key,                                      -- the source's name or id for it
    case                                        -- the component it resolves to
        when n.key_type = 'entity_ref' then lower(n.key)
        else 'component:default/' || n.fallback_name
    end as entity_ref,
    true as unmapped                            -- true: no catalog entry claims it
from named as n
where not exists (select 1 from matched as m where m.key_type = n.key_type and m.key = n.key)
  and not exists (select 1 from by_name as b where b.key_type = n.key_type and b.key = n.key)

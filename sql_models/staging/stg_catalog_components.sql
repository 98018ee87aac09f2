/* One row per Component of the Backstage catalog, with the group that owns it for the
metrics (DESIGN §8). Orphaned entities (annotation backstage.io/orphan = "true") own
nothing and are owned by nobody; a component owned by a User is owned by the first of
that user's catalog groups in ref order (never the user ref: no published row names a
person); an owner group the catalog does not hold is kept and counted in data_quality.
index: entity_ref */
with owning_groups as (
    select g.entity_ref
    from dora_raw.catalog_entities as g
    where g.kind = 'group'
      and coalesce(g.annotations ->> 'backstage.io/orphan', '') <> 'true'
),
user_groups as (
    select m.user_ref, (array_agg(m.group_ref order by m.group_ref collate "C"))[1] as group_ref
    from dora_raw.group_memberships as m
    join owning_groups as o on o.entity_ref = m.group_ref
    group by m.user_ref
),
components as (
    select
        c.*,
        case
            when coalesce(c.annotations ->> 'backstage.io/orphan', '') = 'true' then 'orphaned'
            when c.owner_ref is null then 'none'
            when c.owner_ref like 'user:%' then 'user'
            when c.owner_ref in (select entity_ref from owning_groups) then 'group'
            when c.owner_ref in (
                select entity_ref from dora_raw.catalog_entities where kind = 'group'
            ) then 'orphaned_owner'
            when c.owner_ref like 'group:%' then 'unknown_group'
            else 'none'
        end as ownership
    from dora_raw.catalog_entities as c
    where c.kind = 'component'
)
select
    c.entity_ref,                               -- component:namespace/name
    c.name,                                     -- the component's name
    case c.ownership
        when 'group' then c.owner_ref
        when 'unknown_group' then c.owner_ref
        when 'user' then u.group_ref
    end as owner_ref,                           -- owning group (full, lower-case ref); NULL when none
    c.ownership,                                -- group | user | unknown_group | none | orphaned | orphaned_owner
    c.spec_type,                                -- service, website, library...
    c.lifecycle,                                -- production, experimental...
    c.annotations                               -- the catalog annotations, used to map events
from components as c
left join user_groups as u on u.user_ref = c.owner_ref and c.ownership = 'user'

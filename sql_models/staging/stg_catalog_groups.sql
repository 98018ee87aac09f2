/* One row per group: catalog Groups (orphaned ones excluded: they own nothing) plus
groups named only as a component owner.
index: group_ref */
select
    g.entity_ref as group_ref,                  -- group:namespace/name
    g.parent_ref,                               -- the parent group, NULL at the root
    coalesce(g.title, g.name) as title          -- display name
from dora_raw.catalog_entities as g
where g.kind = 'group'
  and coalesce(g.annotations ->> 'backstage.io/orphan', '') <> 'true'
union
select distinct
    c.owner_ref as group_ref,
    null as parent_ref,
    split_part(c.owner_ref, '/', 2) as title
from dora_staging.stg_catalog_components as c
where c.ownership = 'unknown_group'

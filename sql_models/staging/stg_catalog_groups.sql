/* One row per group: catalog Groups plus groups named only as a component owner.
index: group_ref */
select
    g.entity_ref as group_ref,                  -- group:namespace/name
    g.parent_ref,                               -- the parent group, NULL at the root
    coalesce(g.title, g.name) as title          -- display name
from dora_raw.catalog_entities as g
where g.kind = 'group'
union
select distinct
    c.owner_ref as group_ref,
    null as parent_ref,
    split_part(c.owner_ref, '/', 2) as title
from dora_raw.catalog_entities as c
where c.kind = 'component'
  and c.owner_ref like 'group:%'
  and not exists (
      select 1 from dora_raw.catalog_entities as g2
      where g2.kind = 'group' and g2.entity_ref = c.owner_ref
  )

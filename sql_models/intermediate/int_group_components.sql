/* One row per group and component it owns directly or through a descendant group: the
pool of events a group's numbers are computed over (a parent includes its teams').
index: entity_ref */
with recursive tree (ancestor_ref, group_ref) as (
    select g.group_ref, g.group_ref
    from dora_staging.stg_catalog_groups as g
    union
    select t.ancestor_ref, child.group_ref
    from tree as t
    join dora_staging.stg_catalog_groups as child
      on child.parent_ref = t.group_ref
)
select distinct
    t.ancestor_ref as group_ref,                -- the group
    c.entity_ref                                -- a component in its pool
from tree as t
join dora_staging.stg_catalog_components as c
  on c.owner_ref = t.group_ref

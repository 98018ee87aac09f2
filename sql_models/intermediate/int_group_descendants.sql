/* One row per group and each group in its subtree, itself included (distance 0): the
closure of the catalog's parent links, so "a group and its descendants" is one join.
A cycle in the catalog's parent links cannot make it loop (the path is tracked).
index: ancestor_ref
index: group_ref */
with recursive tree (ancestor_ref, group_ref, distance, path) as (
    select
        g.group_ref,
        g.group_ref,
        0,
        array[g.group_ref]
    from dora_staging.stg_catalog_groups as g
    union all
    select
        t.ancestor_ref,
        child.group_ref,
        t.distance + 1,
        t.path || child.group_ref
    from tree as t
    join dora_staging.stg_catalog_groups as child
      on child.parent_ref = t.group_ref
    where not child.group_ref = any (t.path)
)
select
    t.ancestor_ref,                             -- the group
    t.group_ref,                                -- a group in its subtree (itself included)
    min(t.distance) as distance                 -- levels below ancestor_ref; 0 for itself
from tree as t
group by t.ancestor_ref, t.group_ref

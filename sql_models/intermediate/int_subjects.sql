/* One row per metric subject and component in its pool: each component is a subject
over itself, each group over the components it owns directly or through its
descendants. Every metric is computed once over this mapping, so service and team
numbers share one definition; events are de-duplicated per subject.
index: entity_ref */
select
    'component' as subject_kind,                -- component | group
    c.entity_ref as subject_ref,                -- the component or group ref
    c.entity_ref                                -- a component in the subject's pool
from dora_intermediate.int_components as c
union all
select
    'group',
    gc.group_ref,
    gc.entity_ref
from dora_intermediate.int_group_components as gc

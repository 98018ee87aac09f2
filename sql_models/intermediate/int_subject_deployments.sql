/* One row per subject and successful production deployment in its pool (a deployment
touching two of a group's components counts once for the group). A component's
deployments are one row each already, and so are a group's deployments of a single
component: only deployments of several components are aggregated (failed when any of
them failed, recovered when every one that failed is, at the latest of them).
Incremental by finished_at, as the deployment outcomes it reads.
grain: subject_kind, subject_ref, deployment_id
incremental: finished_at
replaces: deployment_id */
with outcomes as (
    select *
    from dora_intermediate.int_deployment_outcomes as o
    where o.finished_at >= current_setting('dora.dirty_since')::timestamptz
),
shared_deployments as (
    select o.deployment_id
    from outcomes as o
    group by o.deployment_id
    having count(*) > 1
)
select
    'component' as subject_kind,                -- component | group
    o.entity_ref as subject_ref,                -- the component or group
    o.deployment_id,                            -- the deployment
    o.finished_at,                              -- its time
    o.caused_failure,                           -- >= 1 incident blamed on it
    o.shipped_changes > 0 as shipped_change,    -- shipped >= 1 PR or direct change (lead-time coverage)
    o.recovered_at,                             -- all its blamed incidents resolved, at the latest; NULL otherwise
    o.is_rework                                 -- finished during an incident blamed on an earlier deploy
from outcomes as o
union all
select
    'group',
    gc.group_ref,
    o.deployment_id,
    o.finished_at,
    o.caused_failure,
    o.shipped_changes > 0,
    o.recovered_at,
    o.is_rework
from dora_intermediate.int_group_components as gc
join outcomes as o
  on o.entity_ref = gc.entity_ref
where not exists (select 1 from shared_deployments as s where s.deployment_id = o.deployment_id)
union all
select
    'group',
    gc.group_ref,
    o.deployment_id,
    min(o.finished_at),
    bool_or(o.caused_failure),
    bool_or(o.shipped_changes > 0),
    case
        when bool_and(o.recovered_at is not null) filter (where o.caused_failure)
        then max(o.recovered_at)
    end,
    bool_or(o.is_rework)
from dora_intermediate.int_group_components as gc
join outcomes as o
  on o.entity_ref = gc.entity_ref
join shared_deployments as s
  on s.deployment_id = o.deployment_id
group by gc.group_ref, o.deployment_id

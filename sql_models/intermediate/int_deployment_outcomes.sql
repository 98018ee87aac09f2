/* One row per successful production deployment and component, with whether it caused a
failure (at least one incident blamed on it), how many PRs it shipped and how many
changes (PRs and direct changes, commits pushed without a PR, together), when it was
recovered from (the latest resolution among its blamed incidents, only once all of them
are resolved) and whether it is rework (it finished while an incident blamed on an
earlier deployment of the same component was open: a fix-forward or a rollback).
Incremental by finished_at: everything a deployment's row depends on is placed at or
before its finish by the models it reads (an incident blamed on it by deployed_at; an
incident open at its finish by when that opened; a change it shipped by deployed_at), so
their changed weeks cover it.
index: entity_ref, finished_at
grain: deployment_id, entity_ref
incremental: finished_at
replaces: deployment_id */
with deploys as (
    select d.deployment_id, d.entity_ref, d.finished_at
    from dora_intermediate.int_production_deployments as d
    where d.finished_at >= current_setting('dora.dirty_since')::timestamptz
),
blamed as (
    select
        b.deployment_id,
        b.entity_ref,
        -- NULL while any blamed incident is open: a failure is recovered from only
        -- when every incident it caused is resolved.
        case when bool_and(b.resolved_at is not null) then max(b.resolved_at) end as recovered_at
    from dora_intermediate.int_incidents_blamed as b
    where b.deployed_at >= current_setting('dora.dirty_since')::timestamptz
    group by b.deployment_id, b.entity_ref
),
-- A join (hashed on the component), not an EXISTS per deployment: in the select list
-- the planner would scan every blamed incident once per deployment.
rework as (
    select distinct d.deployment_id, d.entity_ref
    from deploys as d
    join dora_intermediate.int_incidents_blamed as o
      on o.entity_ref = d.entity_ref
     and o.opened_at <= d.finished_at
     and (o.resolved_at is null or o.resolved_at >= d.finished_at)
     -- earlier in the order blame uses (finished_at, then deployment_id)
     and (o.deployed_at, o.deployment_id) < (d.finished_at, d.deployment_id)
),
shipped as (
    select
        c.deployment_id,
        c.entity_ref,
        count(*) filter (where not c.is_direct) as shipped_prs,
        count(*) as shipped_changes
    from (
        select deployment_id, entity_ref, false as is_direct
        from dora_intermediate.int_pull_requests_deployed
        where deployment_id is not null
          -- slice_at >= deployed_at: the condition on it finds the slice by its index
          and slice_at >= current_setting('dora.dirty_since')::timestamptz
          and deployed_at >= current_setting('dora.dirty_since')::timestamptz
        union all
        select deployment_id, entity_ref, true
        from dora_intermediate.int_direct_changes_deployed
        where deployment_id is not null
          and deployed_at >= current_setting('dora.dirty_since')::timestamptz
    ) as c
    group by c.deployment_id, c.entity_ref
)
select
    d.deployment_id,                            -- source:external_id
    d.entity_ref,                               -- the component
    d.finished_at,                              -- the deployment's time
    b.deployment_id is not null as caused_failure,  -- >= 1 incident blamed on it
    coalesce(s.shipped_prs, 0) as shipped_prs,  -- PRs whose lead time ends here
    coalesce(s.shipped_changes, 0) as shipped_changes,  -- PRs and direct changes
    b.recovered_at,                             -- latest resolution of its blamed incidents; NULL: not failed, or not recovered yet
    r.deployment_id is not null as is_rework    -- finished while an incident blamed on an earlier deploy of the component was open
from deploys as d
left join blamed as b
  on b.deployment_id = d.deployment_id
 and b.entity_ref = d.entity_ref
left join rework as r
  on r.deployment_id = d.deployment_id
 and r.entity_ref = d.entity_ref
left join shipped as s
  on s.deployment_id = d.deployment_id
 and s.entity_ref = d.entity_ref

/* One row per successful production deployment and component, with whether it caused a
failure (at least one incident blamed on it), how many PRs it shipped, and how many
changes: PRs and direct changes (commits pushed without a PR) together.
index: entity_ref, finished_at */
select
    d.deployment_id,                            -- source:external_id
    d.entity_ref,                               -- the component
    d.finished_at,                              -- the deployment's time
    b.deployment_id is not null as caused_failure,  -- >= 1 incident blamed on it
    coalesce(s.shipped_prs, 0) as shipped_prs,  -- PRs whose lead time ends here
    coalesce(s.shipped_changes, 0) as shipped_changes  -- PRs and direct changes
from dora_intermediate.int_production_deployments as d
left join (
    select distinct deployment_id, entity_ref
    from dora_intermediate.int_incidents_blamed
) as b
  on b.deployment_id = d.deployment_id
 and b.entity_ref = d.entity_ref
left join (
    select
        c.deployment_id,
        c.entity_ref,
        count(*) filter (where not c.is_direct) as shipped_prs,
        count(*) as shipped_changes
    from (
        select deployment_id, entity_ref, false as is_direct
        from dora_intermediate.int_pull_requests_deployed
        where deployment_id is not null
        union all
        select deployment_id, entity_ref, true
        from dora_intermediate.int_direct_changes_deployed
        where deployment_id is not null
    ) as c
    group by c.deployment_id, c.entity_ref
) as s
  on s.deployment_id = d.deployment_id
 and s.entity_ref = d.entity_ref

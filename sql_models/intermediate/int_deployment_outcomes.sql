/* One row per successful production deployment and component, with whether it caused a
failure (at least one incident blamed on it) and how many PRs it shipped.
index: entity_ref, finished_at */
select
    d.deployment_id,                            -- source:external_id
    d.entity_ref,                               -- the component
    d.finished_at,                              -- the deployment's time
    b.deployment_id is not null as caused_failure,  -- >= 1 incident blamed on it
    coalesce(s.shipped_prs, 0) as shipped_prs   -- PRs whose lead time ends here
from dora_intermediate.int_production_deployments as d
left join (
    select distinct deployment_id, entity_ref
    from dora_intermediate.int_incidents_blamed
) as b
  on b.deployment_id = d.deployment_id
 and b.entity_ref = d.entity_ref
left join (
    select deployment_id, entity_ref, count(*) as shipped_prs
    from dora_intermediate.int_pull_requests_deployed
    where deployment_id is not null
    group by deployment_id, entity_ref
) as s
  on s.deployment_id = d.deployment_id
 and s.entity_ref = d.entity_ref

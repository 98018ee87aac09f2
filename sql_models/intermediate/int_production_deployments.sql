/* One row per successful production deployment and component: the deployments DORA
counts. Failed attempts and other environments are excluded here, once. Indexed by
component and SHA for the incremental PR and direct change matching.
index: entity_ref, finished_at
index: entity_ref, commit_sha
grain: deployment_id, entity_ref
incremental: finished_at
replaces: deployment_id */
select
    d.deployment_id,                            -- source:external_id
    d.entity_ref,                               -- the component deployed
    d.finished_at,                              -- the deployment's time
    d.commit_sha                                -- the commit it shipped
from dora_staging.stg_deployments as d
where d.is_production
  and not d.failed
  and d.finished_at >= current_setting('dora.dirty_since')::timestamptz

/* One row per subject and failed production deploy attempt in its pool. Reported,
never counted as a deployment.
grain: subject_kind, subject_ref, deployment_id
incremental: finished_at
replaces: deployment_id */
select distinct
    s.subject_kind,                             -- component | group
    s.subject_ref,                              -- the component or group
    d.deployment_id,                            -- the failed attempt
    d.finished_at                               -- when it failed
from dora_intermediate.int_subjects as s
join dora_staging.stg_deployments as d
  on d.entity_ref = s.entity_ref
where d.is_production
  and d.failed
  and d.finished_at >= current_setting('dora.dirty_since')::timestamptz

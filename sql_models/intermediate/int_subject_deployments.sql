/* One row per subject and successful production deployment in its pool (a deployment
touching two of a group's components counts once for the group).
index: subject_ref, finished_at */
select
    s.subject_kind,                             -- component | group
    s.subject_ref,                              -- the component or group
    o.deployment_id,                            -- the deployment
    min(o.finished_at) as finished_at,          -- its time
    bool_or(o.caused_failure) as caused_failure,  -- >= 1 incident blamed on it
    bool_or(o.shipped_prs > 0) as shipped_change  -- shipped >= 1 PR (lead-time coverage)
from dora_intermediate.int_subjects as s
join dora_intermediate.int_deployment_outcomes as o
  on o.entity_ref = s.entity_ref
group by s.subject_kind, s.subject_ref, o.deployment_id

/* One row per subject and incident affecting a component in its pool (an incident
affecting two of a group's components counts once).
grain: subject_kind, subject_ref, incident_id
incremental: opened_at
replaces: incident_id */
select distinct on (s.subject_kind, s.subject_ref, i.incident_id)
    s.subject_kind,                             -- component | group
    s.subject_ref,                              -- the component or group
    i.incident_id,                              -- the incident
    i.opened_at,                                -- opened
    i.resolved_at,                              -- resolved, NULL while open
    extract(epoch from i.resolved_at - i.opened_at) / 60.0 as restore_minutes  -- NULL while open
from dora_intermediate.int_subjects as s
join dora_staging.stg_incidents as i
  on i.entity_ref = s.entity_ref
where i.opened_at >= current_setting('dora.dirty_since')::timestamptz
order by s.subject_kind, s.subject_ref, i.incident_id

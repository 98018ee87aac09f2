/* One row per incident and affected component that is blamed on a deployment: incidents
not marked as unrelated to a change (caused_by_change is not false) go to the latest
successful production deploy of that component at or before the incident opened, if
that deploy finished at most DORA_INCIDENT_WINDOW_HOURS earlier. At most one deploy per
incident and component.
Incremental by opened_at: a deploy arriving (or changing) at t changes the blame of
incidents opened from t on only, and the lookup reads every deploy before the incident.
A change of blame changes the blamed deploy's week too (changes: deployed_at).
grain: incident_id, entity_ref
incremental: opened_at
replaces: incident_id
changes: deployed_at */
select
    i.incident_id,                              -- the incident
    i.entity_ref,                               -- the affected component
    d.deployment_id,                            -- the deployment blamed
    d.finished_at as deployed_at,               -- when that deployment finished
    i.opened_at,                                -- when the incident opened
    i.resolved_at                               -- when it was resolved; NULL while open
from dora_staging.stg_incidents as i
cross join lateral (
    select pd.deployment_id, pd.finished_at
    from dora_intermediate.int_production_deployments as pd
    where pd.entity_ref = i.entity_ref
      and pd.finished_at <= i.opened_at
    order by pd.finished_at desc, pd.deployment_id desc
    limit 1
) as d
where i.caused_by_change is not false
  and i.opened_at >= current_setting('dora.dirty_since')::timestamptz
  and i.opened_at - d.finished_at
      <= make_interval(hours => current_setting('dora.incident_window_hours')::int)

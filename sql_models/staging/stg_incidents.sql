/* One row per incident and component it affected (two keys of one incident that resolve
to the same component count once).
Incremental by opened_at: an incident is extracted (and re-extracted while open) in the
partition of the day it opened.
index: entity_ref, opened_at
grain: incident_id, entity_ref
incremental: opened_at
replaces: incident_id */
select distinct
    i.source || ':' || i.external_id as incident_id,  -- unique across sources
    k.entity_ref,                               -- affected component
    k.unmapped,                                 -- true: resolved to a fallback ref
    i.opened_at,                                -- when the incident was opened
    i.resolved_at,                              -- when it was resolved; NULL while open
    i.caused_by_change                          -- false: explicitly not caused by a change; NULL: unknown
from dora_raw.incidents as i
join dora_raw.incident_components as ic
  on ic.source = i.source
 and ic.external_id = i.external_id
join dora_staging.stg_service_keys as k
  on k.key_type = ic.service_key_type
 and k.key = ic.service_key
where i.opened_at >= current_setting('dora.dirty_since')::timestamptz

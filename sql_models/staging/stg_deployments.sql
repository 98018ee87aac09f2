/* One row per deploy attempt and component it deployed (a repository can map to more
than one component), with whether its environment is production.
Incremental by finished_at: a deploy is extracted in the partition of the day it finished.
index: entity_ref, finished_at
grain: deployment_id, entity_ref
incremental: finished_at
replaces: deployment_id */
select
    d.source || ':' || d.external_id as deployment_id,   -- unique across sources
    d.source,                                   -- argocd, github, webhook, synthetic...
    k.entity_ref,                               -- the component deployed
    k.unmapped,                                 -- true: resolved to a fallback ref
    d.environment,                              -- environment name as the source gave it
    d.environment ~ current_setting('dora.production_environments') as is_production,  -- matches DORA_PRODUCTION_ENVIRONMENTS
    d.commit_sha,                               -- the commit deployed
    d.started_at,                               -- when the deploy started
    d.finished_at,                              -- when it finished: the deployment's time
    d.failed                                    -- a failed attempt, never a deployment
from dora_raw.deployments as d
join dora_staging.stg_service_keys as k
  on k.key_type = d.service_key_type
 and k.key = d.service_key
where d.finished_at >= current_setting('dora.dirty_since')::timestamptz

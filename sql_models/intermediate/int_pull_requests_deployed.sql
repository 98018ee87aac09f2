/* One row per merged pull request and component, with the production deployment that
shipped it: the earliest deploy of the component whose commit equals the PR's merge
commit or head SHA (squash merges), else the earliest one at or after the merge.
deployment_id is NULL for a PR not deployed (yet).
index: entity_ref, deployed_at */
select
    p.pr_id,                                    -- repository#number
    p.entity_ref,                               -- the component
    p.change_started_at,                        -- first commit authored
    p.opened_at,                                -- PR opened
    p.first_review_at,                          -- first review
    p.merged_at,                                -- merged
    p.changed_lines,                            -- additions + deletions
    p.author,                                   -- raw login, never published
    p.first_reviewer,                           -- raw login, never published
    coalesce(sha.deployment_id, nxt.deployment_id) as deployment_id,  -- the deploy that shipped it
    coalesce(sha.finished_at, nxt.finished_at) as deployed_at,        -- when it reached production
    case
        when sha.deployment_id is not null then 'sha'
        when nxt.deployment_id is not null then 'next_deploy'
    end as matched_by,                          -- sha | next_deploy | NULL (not deployed)
    extract(epoch from coalesce(sha.finished_at, nxt.finished_at) - p.change_started_at) / 3600.0
        as lead_time_hours                      -- first commit -> production, hours
from dora_staging.stg_pull_requests as p
left join lateral (
    select d.deployment_id, d.finished_at
    from dora_intermediate.int_production_deployments as d
    where d.entity_ref = p.entity_ref
      and d.commit_sha in (p.merge_commit_sha, p.head_sha)
    order by d.finished_at, d.deployment_id
    limit 1
) as sha on true
left join lateral (
    select d.deployment_id, d.finished_at
    from dora_intermediate.int_production_deployments as d
    where sha.deployment_id is null
      and d.entity_ref = p.entity_ref
      and d.finished_at >= p.merged_at
    order by d.finished_at, d.deployment_id
    limit 1
) as nxt on true

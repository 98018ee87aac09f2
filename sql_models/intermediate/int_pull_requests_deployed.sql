/* One row per merged pull request and component, with the production deployment that
shipped it: the earliest deploy of the component whose commit equals the PR's merge
commit or head SHA (squash merges), else the earliest one at or after the merge.
A SHA match that finished before the change started (the same commit reached production
by another path first) cannot have shipped this PR and is ignored, so a lead time is
never negative.
deployment_id is NULL for a PR not deployed (yet).
Set-based: each component's deploys are numbered in (finished_at, deployment_id) order,
"earliest" is the smallest number, and the first deploy at or after a merge is number
1 + the deploys finished before it, counted in one sort of deploys and merges together
(a merge sorts before a deploy of the same instant, which therefore ships it). 
Incremental (slice_at = the later of merge and deployment): a run re-matches only the
PRs the new data can move: those merged from dora.dirty_since on, those merged after
their component's last deploy before it (their next deploy is new, or none yet) and
those whose SHA a new deploy carries; each by two index lookups instead of numbering
every deploy. A re-matched PR replaces its old row wherever that was, and the week of
the deploy it left or joined is where its dependents rebuild from.
index: entity_ref, deployed_at
incremental: slice_at
replaces: pr_id, entity_ref
changes: deployed_at
slice: query */
with deploys as (
    select
        d.deployment_id,
        d.entity_ref,
        d.finished_at,
        d.commit_sha,
        row_number() over (partition by d.entity_ref order by d.finished_at, d.deployment_id) as deploy_no
    from dora_intermediate.int_production_deployments as d
),
sha_matches as (
    select p.pr_id, p.entity_ref, d.deploy_no
    from dora_intermediate.int_pull_request_components as p
    join deploys as d
      on d.entity_ref = p.entity_ref
     and d.commit_sha = p.merge_commit_sha
     and d.finished_at >= p.change_started_at
    union all
    select p.pr_id, p.entity_ref, d.deploy_no
    from dora_intermediate.int_pull_request_components as p
    join deploys as d
      on d.entity_ref = p.entity_ref
     and d.commit_sha = p.head_sha
     and d.finished_at >= p.change_started_at
),
first_sha_match as (
    select pr_id, entity_ref, min(deploy_no) as deploy_no
    from sha_matches
    group by pr_id, entity_ref
),
merges_and_deploys as (
    select
        p.pr_id, p.entity_ref, p.merged_at as at, 0 as is_deploy,
        p.change_started_at, p.opened_at, p.first_review_at, p.merged_at, p.changed_lines,
        p.author, p.first_reviewer, p.merge_commit_sha, p.head_sha
    from dora_intermediate.int_pull_request_components as p
    union all
    select
        null, d.entity_ref, d.finished_at, 1,
        null, null, null, null, null,
        null, null, null, null
    from deploys as d
),
merges as (
    select
        m.*,
        sum(m.is_deploy) over (
            partition by m.entity_ref
            order by m.at, m.is_deploy
            rows between unbounded preceding and current row
        ) as deploys_before
    from merges_and_deploys as m
),
shipped as (
    select
        p.*,
        f.deploy_no as sha_deploy_no
    from merges as p
    left join first_sha_match as f
      on f.pr_id = p.pr_id
     and f.entity_ref = p.entity_ref
    -- "is not null" rather than is_deploy = 0: the planner estimates it as most rows
    -- (it is), where an equality on a computed column reads as 0.5 % of them.
    where p.pr_id is not null
),
-- A full build: the numbering above, over every PR and deploy.
full_path as (
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
    d.deployment_id,                            -- the deploy that shipped it
    d.finished_at as deployed_at,               -- when it reached production
    case
        when p.sha_deploy_no is not null then 'sha'
        when d.deployment_id is not null then 'next_deploy'
    end as matched_by,                          -- sha | next_deploy | NULL (not deployed)
    extract(epoch from d.finished_at - p.change_started_at) / 3600.0
        as lead_time_hours                      -- first commit -> production, hours
from shipped as p
left join deploys as d
  on d.entity_ref = p.entity_ref
 and d.deploy_no = coalesce(p.sha_deploy_no, p.deploys_before + 1)
where current_setting('dora.dirty_since') = '-infinity'
),
-- The slice: the deploys from dirty_since on, and the PRs they or the new merges can move.
new_deploys as (
    select d.entity_ref, d.commit_sha
    from dora_intermediate.int_production_deployments as d
    where d.finished_at >= current_setting('dora.dirty_since')::timestamptz
      and current_setting('dora.dirty_since') <> '-infinity'
),
candidates as (
    select p.*
    from dora_intermediate.int_pull_request_components as p
    where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
      and current_setting('dora.dirty_since') <> '-infinity'
    union
    -- merged after the component's last deploy before the slice: shipped by a new one, or not yet
    select p.*
    from (select distinct entity_ref from new_deploys) as c
    cross join lateral (
        select max(d.finished_at) as finished_at
        from dora_intermediate.int_production_deployments as d
        where d.entity_ref = c.entity_ref
          and d.finished_at < current_setting('dora.dirty_since')::timestamptz
    ) as last_before
    cross join lateral (
        select q.*
        from dora_intermediate.int_pull_request_components as q
        where q.entity_ref = c.entity_ref
          and q.merged_at > coalesce(last_before.finished_at, '-infinity')
          and q.merged_at < current_setting('dora.dirty_since')::timestamptz
        offset 0  -- kept a per-component index range scan (not flattened into a hash join)
    ) as p
    union
    -- whose merge commit or head SHA a new deploy carries (both indexes, per deploy)
    select p.*
    from (select distinct entity_ref, commit_sha from new_deploys) as d
    cross join lateral (
        select q.*
        from dora_intermediate.int_pull_request_components as q
        where (q.merge_commit_sha = d.commit_sha or q.head_sha = d.commit_sha)
          and q.entity_ref = d.entity_ref
          and q.merged_at < current_setting('dora.dirty_since')::timestamptz
        offset 0  -- index lookups per deploy
    ) as p
),
slice_path as (
    select
        p.pr_id, p.entity_ref, p.change_started_at, p.opened_at, p.first_review_at, p.merged_at,
        p.changed_lines, p.author, p.first_reviewer,
        d.deployment_id,
        d.finished_at,
        case
            when s.deployment_id is not null then 'sha'
            when n.deployment_id is not null then 'next_deploy'
        end,
        extract(epoch from d.finished_at - p.change_started_at) / 3600.0
    from candidates as p
    left join lateral (
        select x.deployment_id, x.finished_at
        from dora_intermediate.int_production_deployments as x
        where x.entity_ref = p.entity_ref
          and x.commit_sha in (p.merge_commit_sha, p.head_sha)
          and x.finished_at >= p.change_started_at
        order by x.finished_at, x.deployment_id
        limit 1
    ) as s on true
    left join lateral (
        select x.deployment_id, x.finished_at
        from dora_intermediate.int_production_deployments as x
        where x.entity_ref = p.entity_ref
          and x.finished_at >= p.merged_at
          and s.deployment_id is null
        order by x.finished_at, x.deployment_id
        limit 1
    ) as n on true
    cross join lateral (select coalesce(s.deployment_id, n.deployment_id) as deployment_id,
                               coalesce(s.finished_at, n.finished_at) as finished_at) as d
)
select
    m.pr_id,                                    -- repository#number
    m.entity_ref,                               -- the component
    m.change_started_at,                        -- first commit authored
    m.opened_at,                                -- PR opened
    m.first_review_at,                          -- first review
    m.merged_at,                                -- merged
    m.changed_lines,                            -- additions + deletions
    m.author,                                   -- raw login, never published
    m.first_reviewer,                           -- raw login, never published
    m.deployment_id,                            -- the deploy that shipped it
    m.deployed_at,                              -- when it reached production
    m.matched_by,                               -- sha | next_deploy | NULL (not deployed)
    m.lead_time_hours,                          -- first commit -> production, hours
    greatest(m.merged_at, m.deployed_at) as slice_at  -- the later of merge and deployment (incremental slices)
from (
    select * from full_path
    union all
    select * from slice_path
) as m

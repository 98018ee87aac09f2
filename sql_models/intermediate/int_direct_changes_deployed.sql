/* One row per direct change (a commit pushed straight to the default branch) and
component, with the production deployment that shipped it (DESIGN §7): the earliest
deploy of the component whose commit equals the change's SHA, else the earliest one at
or after its committed time. A SHA match that finished before the change was authored
cannot have shipped it and is ignored, so a lead time is never negative.
deployment_id is NULL for a change not deployed (yet).
Set-based, as int_pull_requests_deployed: each component's deploys are numbered in
(finished_at, deployment_id) order, and the first deploy at or after a commit is
number 1 + the deploys finished before it, counted in one sort of deploys and commits
together (a commit sorts before a deploy of the same instant, which therefore ships it).
Only components with direct changes are looked at. Rebuilt in full (small); the week of
the earliest deploy a change left or joined is where its dependents rebuild from.
changes: deployed_at */
with changed_components as (
    select distinct c.entity_ref
    from dora_staging.stg_direct_changes as c
),
deploys as (
    select
        d.deployment_id,
        d.entity_ref,
        d.finished_at,
        d.commit_sha,
        row_number() over (partition by d.entity_ref order by d.finished_at, d.deployment_id) as deploy_no
    from dora_intermediate.int_production_deployments as d
    join changed_components as cc
      on cc.entity_ref = d.entity_ref
),
first_sha_match as (
    select c.change_id, c.entity_ref, min(d.deploy_no) as deploy_no
    from dora_staging.stg_direct_changes as c
    join deploys as d
      on d.entity_ref = c.entity_ref
     and d.commit_sha = c.sha
     and d.finished_at >= c.change_started_at
    group by c.change_id, c.entity_ref
),
commits_and_deploys as (
    select
        c.change_id, c.entity_ref, c.committed_at as at, 0 as is_deploy,
        c.change_started_at, c.committed_at
    from dora_staging.stg_direct_changes as c
    union all
    select null, d.entity_ref, d.finished_at, 1, null, null
    from deploys as d
),
numbered as (
    select
        m.*,
        sum(m.is_deploy) over (
            partition by m.entity_ref
            order by m.at, m.is_deploy
            rows between unbounded preceding and current row
        ) as deploys_before
    from commits_and_deploys as m
),
shipped as (
    select
        n.change_id,
        n.entity_ref,
        n.change_started_at,
        n.committed_at,
        n.deploys_before,
        f.deploy_no as sha_deploy_no
    from numbered as n
    left join first_sha_match as f
      on f.change_id = n.change_id
     and f.entity_ref = n.entity_ref
    where n.change_id is not null
)
select
    s.change_id,                                -- repository@sha
    s.entity_ref,                               -- the component
    s.change_started_at,                        -- commit authored
    s.committed_at,                             -- committed to the default branch
    d.deployment_id,                            -- the deploy that shipped it
    d.finished_at as deployed_at,               -- when it reached production
    case
        when s.sha_deploy_no is not null then 'sha'
        when d.deployment_id is not null then 'next_deploy'
    end as matched_by,                          -- sha | next_deploy | NULL (not deployed)
    extract(epoch from d.finished_at - s.change_started_at) / 3600.0
        as lead_time_hours                      -- authored -> production, hours
from shipped as s
left join deploys as d
  on d.entity_ref = s.entity_ref
 and d.deploy_no = coalesce(s.sha_deploy_no, s.deploys_before + 1)

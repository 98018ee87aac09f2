/* One row per subject and deployed pull request in its pool: the change, its stages and
its lead time. A PR of a repository that maps to two of a group's components counts
once, shipped by the earliest of its deployments. A component's PRs are one row each
already, and so are a group's PRs of repositories that map to one component: only the
PRs of multi-component repositories need that de-duplication and its sort. */
with changes as (
    select
        p.pr_id,
        p.entity_ref,
        p.deployment_id,
        p.deployed_at,
        p.lead_time_hours,
        extract(epoch from p.opened_at - p.change_started_at) / 3600.0 as coding_hours,
        extract(epoch from p.first_review_at - p.opened_at) / 3600.0 as review_wait_hours,
        extract(epoch from p.merged_at - coalesce(p.first_review_at, p.opened_at)) / 3600.0 as review_hours,
        extract(epoch from p.deployed_at - p.merged_at) / 3600.0 as release_hours
    from dora_intermediate.int_pull_requests_deployed as p
    where p.deployment_id is not null
),
shared_prs as (
    select c.pr_id
    from changes as c
    group by c.pr_id
    having count(*) > 1
)
select
    'component' as subject_kind,                -- component | group
    c.entity_ref as subject_ref,                -- the component or group
    c.pr_id,                                    -- repository#number
    c.deployment_id,                            -- the deployment that shipped it
    c.deployed_at,                              -- when it reached production
    c.lead_time_hours,                          -- first commit -> production
    c.coding_hours,                             -- first commit -> PR opened
    c.review_wait_hours,                        -- opened -> first review
    c.review_hours,                             -- first review -> merged
    c.release_hours                             -- merged -> production
from changes as c
union all
select
    'group',
    gc.group_ref,
    c.pr_id,
    c.deployment_id,
    c.deployed_at,
    c.lead_time_hours,
    c.coding_hours,
    c.review_wait_hours,
    c.review_hours,
    c.release_hours
from dora_intermediate.int_group_components as gc
join changes as c
  on c.entity_ref = gc.entity_ref
where not exists (select 1 from shared_prs as s where s.pr_id = c.pr_id)
union all
select * from (
    select distinct on (gc.group_ref, c.pr_id)
        'group',
        gc.group_ref,
        c.pr_id,
        c.deployment_id,
        c.deployed_at,
        c.lead_time_hours,
        c.coding_hours,
        c.review_wait_hours,
        c.review_hours,
        c.release_hours
    from dora_intermediate.int_group_components as gc
    join changes as c
      on c.entity_ref = gc.entity_ref
    join shared_prs as s
      on s.pr_id = c.pr_id
    order by gc.group_ref, c.pr_id, c.deployed_at, c.deployment_id
) as pooled

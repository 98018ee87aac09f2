/* One row per subject and deployed pull request in its pool: the change, its stages and
its lead time. A PR of a repository that maps to two of a group's components counts
once, shipped by the earliest of its deployments.
index: subject_ref, deployed_at */
select distinct on (s.subject_kind, s.subject_ref, p.pr_id)
    s.subject_kind,                             -- component | group
    s.subject_ref,                              -- the component or group
    p.pr_id,                                    -- repository#number
    p.deployment_id,                            -- the deployment that shipped it
    p.deployed_at,                              -- when it reached production
    p.lead_time_hours,                          -- first commit -> production
    extract(epoch from p.opened_at - p.change_started_at) / 3600.0 as coding_hours,          -- first commit -> PR opened
    extract(epoch from p.first_review_at - p.opened_at) / 3600.0 as review_wait_hours,       -- opened -> first review
    extract(epoch from p.merged_at - coalesce(p.first_review_at, p.opened_at)) / 3600.0 as review_hours,  -- first review -> merged
    extract(epoch from p.deployed_at - p.merged_at) / 3600.0 as release_hours                -- merged -> production
from dora_intermediate.int_subjects as s
join dora_intermediate.int_pull_requests_deployed as p
  on p.entity_ref = s.entity_ref
where p.deployment_id is not null
order by s.subject_kind, s.subject_ref, p.pr_id, p.deployed_at, p.deployment_id

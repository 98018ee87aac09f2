/* One row per merged pull request and component of its repository. change_started_at is
the authored time of the PR's first commit (opened_at when unknown, and never later
than the merge: a rebased history can carry odd author dates).
Incremental by merged_at: a PR is extracted in the partition of the day it merged.
index: entity_ref, merged_at
grain: pr_id, entity_ref
incremental: merged_at
replaces: pr_id */
select
    p.repository || '#' || p.number as pr_id,   -- unique: numbers repeat across repositories
    p.repository,                               -- owner/name
    p.number,                                   -- PR number in its repository
    k.entity_ref,                               -- the component the repository maps to
    least(coalesce(p.first_commit_at, p.opened_at), p.opened_at, p.merged_at) as change_started_at,  -- start of lead time
    p.first_commit_at,                          -- authored time of the first commit
    p.opened_at,                                -- PR opened
    p.first_review_at,                          -- first review by someone other than the author
    p.merged_at,                                -- PR merged
    p.merge_commit_sha,                         -- merge commit SHA
    p.head_sha,                                 -- head SHA (what a squash merge deploys)
    p.author,                                   -- raw login, never published
    p.first_reviewer,                           -- raw login, never published
    coalesce(p.additions, 0) + coalesce(p.deletions, 0) as changed_lines  -- PR size
from dora_raw.pull_requests as p
join dora_staging.stg_service_keys as k
  on k.key_type = 'github_repo'
 and k.key = p.repository
where p.merged_at >= current_setting('dora.dirty_since')::timestamptz

/* One row per change pushed straight to a repository's default branch (a commit no
merged pull request contains, DESIGN §7) and component of its repository.
change_started_at is the commit's authored time, never later than its committed time
(a rebased or amended commit can carry an older or odd author date). A commit that is
a landed PR's merge commit or head SHA is a PR's change, never also a direct one.
index: entity_ref, committed_at */
select
    c.repository || '@' || c.sha as change_id,  -- unique: the same commit can sit in a fork
    c.repository,                               -- owner/name
    c.sha,                                      -- the commit
    k.entity_ref,                               -- the component the repository maps to
    least(c.authored_at, c.committed_at) as change_started_at,  -- start of lead time
    c.committed_at                              -- committed to the default branch
from dora_raw.direct_changes as c
join dora_staging.stg_service_keys as k
  on k.key_type = 'github_repo'
 and k.key = c.repository
where not exists (
    select 1
    from dora_raw.pull_requests as p
    where p.repository = c.repository
      and p.merged_at is not null
      and (p.merge_commit_sha = c.sha or p.head_sha = c.sha)
)

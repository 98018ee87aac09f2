/* One row per merged pull request and component it is a change of: the mapping of
stg_pull_requests (repository -> component), refined for repositories that hold several
components in folders (monorepos). A component whose backstage.io/source-location ends
in a folder of the repository gets only the PRs that change a file under that folder (a
PR touching two folders is a change of both); a component of that repository without a
folder keeps the PRs no foldered sibling claims. A PR of such a repository whose file
list was not extracted keeps the repository mapping (mapped_by = 'no_file_list').
Incremental by merged_at: a PR's file list is extracted with it, in its merge day's partition.
Indexed by merge commit and head SHA: a night's deploys look up the PRs they ship by SHA
(int_pull_requests_deployed).
index: entity_ref, merged_at
index: merge_commit_sha
index: head_sha
grain: pr_id, entity_ref
incremental: merged_at
replaces: pr_id */
with folders as (
    select c.entity_ref, f.repository, f.folder
    from dora_staging.stg_catalog_components as c
    cross join lateral dora_lib.source_location_folder(c.annotations ->> 'backstage.io/source-location') as f
),
split_repositories as (
    select distinct repository
    from folders
),
split_prs as (
    select distinct on (p.pr_id)
        p.*,
        f.paths
    from dora_staging.stg_pull_requests as p
    join split_repositories as r
      on r.repository = p.repository
    left join dora_raw.pull_request_files as f
      on f.repository = p.repository
     and f.number = p.number
    where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
    order by p.pr_id
),
claims as (
    select s.pr_id, fo.entity_ref
    from split_prs as s
    join folders as fo
      on fo.repository = s.repository
    where s.paths is not null
      -- starts_with, not like: a folder may hold _ or %
      and exists (select 1 from unnest(s.paths) as c(path) where starts_with(c.path, fo.folder || '/'))
),
-- Joined, not probed row by row: the repository mapping's rows are most of the table.
claimed_prs as (
    select distinct pr_id
    from claims
),
folder_components as (
    select distinct entity_ref, repository
    from folders
)
select
    p.pr_id,                                    -- repository#number
    p.repository,                               -- owner/name
    p.number,                                   -- PR number in its repository
    p.entity_ref,                               -- the component it is a change of
    p.change_started_at,                        -- start of lead time
    p.first_commit_at,                          -- authored time of the first commit
    p.opened_at,                                -- PR opened
    p.first_review_at,                          -- first review by someone other than the author
    p.merged_at,                                -- PR merged
    p.merge_commit_sha,                         -- merge commit SHA
    p.head_sha,                                 -- head SHA (what a squash merge deploys)
    p.author,                                   -- raw login, never published
    p.first_reviewer,                           -- raw login, never published
    p.changed_lines,                            -- PR size
    case
        when s.pr_id is null then 'repository'
        when s.paths is null then 'no_file_list'
        else 'unclaimed'
    end as mapped_by                            -- repository | folder | unclaimed (a split repository's PR no folder claims) | no_file_list
from dora_staging.stg_pull_requests as p
left join split_prs as s
  on s.pr_id = p.pr_id
left join claimed_prs as cp
  on cp.pr_id = p.pr_id
left join folder_components as fc
  on fc.entity_ref = p.entity_ref
 and fc.repository = p.repository
where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
  and (s.pr_id is null                          -- a repository no component splits
       or s.paths is null                       -- no file list: the repository mapping
       or (fc.entity_ref is null and cp.pr_id is null))  -- a component without a folder here, a PR no folder claims
union all
select
    s.pr_id,
    s.repository,
    s.number,
    c.entity_ref,
    s.change_started_at,
    s.first_commit_at,
    s.opened_at,
    s.first_review_at,
    s.merged_at,
    s.merge_commit_sha,
    s.head_sha,
    s.author,
    s.first_reviewer,
    s.changed_lines,
    'folder'
from claims as c
join split_prs as s
  on s.pr_id = c.pr_id

/* One row per group and merged pull request of a component in its pool (owned directly
or through a descendant group): the PRs a team's activity is computed over. A PR of a
repository that maps to two of a group's components counts once.
index: group_ref, merged_at
grain: group_ref, pr_id
incremental: merged_at
replaces: pr_id */
select distinct
    gc.group_ref,                               -- the group
    r.pr_id,                                    -- repository#number
    r.opened_at,                                -- PR opened
    r.first_review_at,                          -- first review
    r.merged_at,                                -- merged
    r.changed_lines,                            -- additions + deletions
    r.author,                                   -- raw login, only to count distinct authors; never published
    r.cycle_hours,                              -- opened -> merged
    r.review_wait_hours,                        -- opened -> first review
    r.review_to_merge_hours,                    -- first review -> merged
    r.reviewed_outside_team                     -- NULL: unknown
from dora_intermediate.int_group_components as gc
join dora_intermediate.int_pull_request_components as p
  on p.entity_ref = gc.entity_ref
join dora_intermediate.int_pull_request_reviews as r
  on r.pr_id = p.pr_id
where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
  and r.merged_at >= current_setting('dora.dirty_since')::timestamptz

/* One row per group and merged pull request of a component in its pool (owned directly
or through a descendant group): the PRs a team's activity is computed over. A PR of a
repository that maps to two of a group's components counts once: only such PRs (of a
repository mapped to several components) are de-duplicated, the rest are one row each.
index: group_ref, merged_at
grain: group_ref, pr_id
incremental: merged_at
replaces: pr_id */
with slice as (
    select p.pr_id, p.entity_ref
    from dora_intermediate.int_pull_request_components as p
    where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
),
shared_prs as (
    select s.pr_id
    from slice as s
    group by s.pr_id
    having count(*) > 1
),
pooled as (
    select gc.group_ref, s.pr_id
    from dora_intermediate.int_group_components as gc
    join slice as s
      on s.entity_ref = gc.entity_ref
    where not exists (select 1 from shared_prs as sp where sp.pr_id = s.pr_id)
    union all
    select distinct gc.group_ref, s.pr_id
    from dora_intermediate.int_group_components as gc
    join slice as s
      on s.entity_ref = gc.entity_ref
    join shared_prs as sp
      on sp.pr_id = s.pr_id
)
select
    g.group_ref,                                -- the group
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
from pooled as g
join dora_intermediate.int_pull_request_reviews as r
  on r.pr_id = g.pr_id
where r.merged_at >= current_setting('dora.dirty_since')::timestamptz

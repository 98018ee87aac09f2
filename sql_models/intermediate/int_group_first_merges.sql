/* One row per group with merged pull requests: when its first one merged (where its
SPACE activity history starts). Small, so the weekly activity need not scan all history.
Incremental by first_merged_at: a PR merged from dirty_since on changes only a group
that had none before (an index probe per group says which).
grain: group_ref
incremental: first_merged_at */
select
    pr.group_ref,                               -- the group
    min(pr.merged_at) as first_merged_at        -- its first merged PR
from dora_intermediate.int_group_pull_requests as pr
where pr.merged_at >= current_setting('dora.dirty_since')::timestamptz
  and not exists (
      select 1
      from dora_intermediate.int_group_pull_requests as before
      where before.group_ref = pr.group_ref
        and before.merged_at < current_setting('dora.dirty_since')::timestamptz
  )
group by pr.group_ref

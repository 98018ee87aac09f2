/* One row per merged pull request: its stage times and whether its first reviewer is
outside the author's team (the groups the author is a direct member of). The author and
reviewer are resolved to catalog users through int_user_logins; when either is unknown,
or the author belongs to no group, reviewed_outside_team is NULL and the PR is left out
of the share. Team level only: nothing here is published per person.
index: pr_id
grain: pr_id
incremental: merged_at */
with prs as (
    select distinct on (p.pr_id)
        p.pr_id,
        p.opened_at,
        p.first_review_at,
        p.merged_at,
        p.changed_lines,
        p.author,
        p.first_reviewer
    from dora_staging.stg_pull_requests as p
    where p.merged_at >= current_setting('dora.dirty_since')::timestamptz
    order by p.pr_id
)
select
    p.pr_id,                                    -- repository#number
    p.opened_at,                                -- PR opened
    p.first_review_at,                          -- first review; NULL: merged without one
    p.merged_at,                                -- merged
    p.changed_lines,                            -- additions + deletions
    coalesce(a.user_ref, lower(trim(p.author))) as author,  -- catalog user, else raw login: only to count distinct authors; never published
    extract(epoch from p.merged_at - p.opened_at) / 3600.0 as cycle_hours,  -- opened -> merged
    extract(epoch from p.first_review_at - p.opened_at) / 3600.0 as review_wait_hours,  -- opened -> first review
    extract(epoch from p.merged_at - p.first_review_at) / 3600.0 as review_to_merge_hours,  -- first review -> merged
    case
        when p.first_review_at is null or a.user_ref is null or r.user_ref is null then null
        when not exists (
            select 1 from dora_staging.stg_group_members as am
            where am.user_ref = a.user_ref
        ) then null
        else not exists (
            select 1
            from dora_staging.stg_group_members as am
            join dora_staging.stg_group_members as rm
              on rm.group_ref = am.group_ref
            where am.user_ref = a.user_ref
              and rm.user_ref = r.user_ref
        )
    end as reviewed_outside_team                -- NULL: not reviewed, or author/reviewer/team unknown
from prs as p
-- The logins resolved in the one pass over the PRs (a CTE of its own joined back by pr_id
-- spilled all 1.5 million PRs to disk and read them twice). One row per login (its grain).
left join dora_intermediate.int_user_logins as a
  on a.login = lower(trim(p.author))
left join dora_intermediate.int_user_logins as r
  on r.login = lower(trim(p.first_reviewer))

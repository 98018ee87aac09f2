/* SPACE activity and efficiency per group and ISO week (Monday, UTC), from merged pull
requests of the components the group owns directly or through its descendant groups
(a PR counts once per group, in the week it was merged). One row per group and week
from the week of the group's first merged PR to the week holding as_of (that last week
may be partial); weeks without merged PRs read 0 with NULL medians. Team level only:
nothing is computed or published per person, and a week whose PRs come from fewer than
DORA_ACTIVITY_MIN_AUTHORS distinct authors publishes its counts but no medians or
shares (suppressed = true): they would describe one or two people.
grain: group_ref, week_start
incremental: week_start */
with weeks as (
    select p.period_start, p.period_end
    from dora_intermediate.int_periods as p
    where p.period_kind = 'week'
      and p.period_start >= current_setting('dora.dirty_since')::timestamptz
),
groups as (
    select f.group_ref, f.first_merged_at
    from dora_intermediate.int_group_first_merges as f
),
grid as (
    select g.group_ref, w.period_start, w.period_end
    from groups as g
    join weeks as w
      on w.period_end > g.first_merged_at
),
-- Each PR is assigned its week (date_trunc) and grouped once, then joined to the grid on
-- (group, week): not tested against every week of its group by a range join.
activity as (
    select
        pr.group_ref,
        date_trunc('week', pr.merged_at, 'UTC') as period_start,
        count(*) as merged_prs,
        count(distinct pr.author) as authors,
        count(pr.first_review_at) as reviewed_prs,
        percentile_cont(0.5) within group (order by pr.cycle_hours) as median_pr_cycle_hours,
        percentile_cont(0.5) within group (order by pr.review_wait_hours) as median_review_wait_hours,
        percentile_cont(0.5) within group (order by pr.review_to_merge_hours) as median_review_to_merge_hours,
        percentile_cont(0.5) within group (order by pr.changed_lines) as median_pr_size_lines,
        count(pr.reviewed_outside_team) as cross_team_review_basis_prs,
        count(*) filter (where pr.reviewed_outside_team) as cross_team_reviewed_prs
    from dora_intermediate.int_group_pull_requests as pr
    where pr.merged_at >= current_setting('dora.dirty_since')::timestamptz
      -- the week holding as_of ends at as_of
      and pr.merged_at < current_setting('dora.as_of')::timestamptz
    group by pr.group_ref, date_trunc('week', pr.merged_at, 'UTC')
)
select
    g.group_ref,                                -- group:namespace/name
    cg.parent_ref,                              -- parent group; NULL at the root
    (g.period_start at time zone 'UTC')::date as week_start,  -- ISO Monday, UTC
    coalesce(a.merged_prs, 0) as merged_prs,    -- PRs merged in the week
    case when not s.suppressed then round(a.median_pr_cycle_hours::numeric, 2) end
        as median_pr_cycle_hours,               -- median opened -> merged, hours; NULL when suppressed
    case when not s.suppressed then round(a.median_review_wait_hours::numeric, 2) end
        as median_review_wait_hours,            -- median opened -> first review, hours (reviewed PRs); NULL when suppressed
    case when not s.suppressed then round(a.median_review_to_merge_hours::numeric, 2) end
        as median_review_to_merge_hours,        -- median first review -> merged, hours (reviewed PRs); NULL when suppressed
    coalesce(a.reviewed_prs, 0) as reviewed_prs,  -- merged PRs with a first review (the review medians' basis)
    case when not s.suppressed then round(a.median_pr_size_lines::numeric, 1) end
        as median_pr_size_lines,                -- median additions + deletions; NULL when suppressed
    case when not s.suppressed
         then round(100.0 * a.cross_team_reviewed_prs / nullif(a.cross_team_review_basis_prs, 0), 2) end
        as cross_team_review_pct,               -- share of basis PRs first reviewed by someone outside the author's team, percent; NULL when suppressed
    coalesce(a.cross_team_review_basis_prs, 0) as cross_team_review_basis_prs,  -- reviewed PRs whose author and reviewer are known catalog users (author in a team)
    case when not s.suppressed then coalesce(a.cross_team_reviewed_prs, 0) end
        as cross_team_reviewed_prs,             -- of which first reviewed by someone outside the author's team; NULL when suppressed
    s.suppressed,                               -- true: the week's PRs come from fewer than DORA_ACTIVITY_MIN_AUTHORS authors
    now() as computed_at                        -- when this row was built
from grid as g
left join activity as a
  on a.group_ref = g.group_ref
 and a.period_start = g.period_start
left join dora_staging.stg_catalog_groups as cg
  on cg.group_ref = g.group_ref
cross join lateral (
    select coalesce(a.authors, 0) > 0
           and a.authors < current_setting('dora.activity_min_authors')::int as suppressed
) as s

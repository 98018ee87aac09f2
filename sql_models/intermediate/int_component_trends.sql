/* One row per component and trend window: 'recent' = [as_of - DORA_RULE_RECENT_DAYS,
as_of) and 'baseline' = the DORA_RULE_BASELINE_DAYS before it. The measures the
improvement-candidate rules compare, each component with its own history. Deployments
count by when they finished, incidents by when they opened, PRs by when they merged.
index: entity_ref */
with params as (
    select
        current_setting('dora.as_of')::timestamptz as as_of,
        current_setting('dora.rule_recent_days')::int as recent_days,
        current_setting('dora.rule_baseline_days')::int as baseline_days,
        current_setting('dora.rule_review_wait_hours')::numeric as review_wait_hours
),
windows as (
    select
        'recent' as trend_window,
        p.recent_days as days,
        p.as_of - make_interval(days => p.recent_days) as window_start,
        p.as_of as window_end
    from params as p
    union all
    select
        'baseline',
        p.baseline_days,
        p.as_of - make_interval(days => p.recent_days + p.baseline_days),
        p.as_of - make_interval(days => p.recent_days)
    from params as p
),
deploys as (
    select
        d.subject_ref as entity_ref,
        w.trend_window,
        count(*) as deployments,
        count(*) filter (where d.caused_failure) as failed_deployments,
        count(*) filter (where d.shipped_change) as deployments_with_changes,
        count(*) filter (where d.is_rework) as rework_deployments
    from dora_intermediate.int_subject_deployments as d
    join windows as w
      on d.finished_at >= w.window_start
     and d.finished_at < w.window_end
    where d.subject_kind = 'component'
    group by d.subject_ref, w.trend_window
),
incidents as (
    select
        i.subject_ref as entity_ref,
        w.trend_window,
        count(*) as incidents,
        count(i.restore_minutes) as resolved_incidents,
        percentile_cont(0.5) within group (order by i.restore_minutes) as median_restore_minutes,
        max(i.restore_minutes) as max_restore_minutes
    from dora_intermediate.int_subject_incidents as i
    join windows as w
      on i.opened_at >= w.window_start
     and i.opened_at < w.window_end
    where i.subject_kind = 'component'
    group by i.subject_ref, w.trend_window
),
prs as (
    select
        p.entity_ref,
        w.trend_window,
        count(*) as merged_prs,
        count(p.first_review_at) as reviewed_prs,
        percentile_cont(0.5) within group (
            order by extract(epoch from p.first_review_at - p.opened_at) / 3600.0
        ) as median_review_wait_hours,
        count(*) filter (
            where extract(epoch from p.first_review_at - p.opened_at) / 3600.0 > pa.review_wait_hours
        ) as prs_waiting_over_threshold,
        percentile_cont(0.5) within group (order by p.changed_lines) as median_pr_lines,
        count(p.deployment_id) as deployed_prs,
        count(*) filter (where p.matched_by = 'sha') as prs_matched_by_sha
    from dora_intermediate.int_pull_requests_deployed as p
    cross join params as pa
    join windows as w
      on p.merged_at >= w.window_start
     and p.merged_at < w.window_end
    group by p.entity_ref, w.trend_window
)
select
    c.entity_ref,                               -- the component
    c.owner_ref,                                -- its owning group; NULL for fallback refs
    w.trend_window,                             -- recent | baseline
    w.days,                                     -- window length in days
    w.window_start,                             -- inclusive
    w.window_end,                               -- exclusive
    coalesce(d.deployments, 0) as deployments,  -- successful production deployments
    coalesce(d.failed_deployments, 0) as failed_deployments,  -- deployments with >= 1 blamed incident
    coalesce(d.deployments_with_changes, 0) as deployments_with_changes,  -- deployments that shipped >= 1 PR
    coalesce(i.incidents, 0) as incidents,      -- incidents opened
    coalesce(i.resolved_incidents, 0) as resolved_incidents,  -- of which resolved
    i.median_restore_minutes,                   -- median resolved - opened
    i.max_restore_minutes,                      -- longest resolved - opened
    coalesce(p.merged_prs, 0) as merged_prs,    -- PRs merged
    coalesce(p.reviewed_prs, 0) as reviewed_prs,  -- of which reviewed
    p.median_review_wait_hours,                 -- median opened -> first review
    coalesce(p.prs_waiting_over_threshold, 0) as prs_waiting_over_threshold,  -- reviewed PRs waiting > DORA_RULE_REVIEW_WAIT_HOURS
    p.median_pr_lines,                          -- median additions + deletions
    coalesce(p.deployed_prs, 0) as deployed_prs,  -- merged PRs already in production
    coalesce(p.prs_matched_by_sha, 0) as prs_matched_by_sha,  -- of which matched to their deploy by commit SHA
    coalesce(d.rework_deployments, 0) as rework_deployments  -- deployments made while an earlier deploy's incident was open
from dora_intermediate.int_components as c
cross join windows as w
left join deploys as d
  on d.entity_ref = c.entity_ref
 and d.trend_window = w.trend_window
left join incidents as i
  on i.entity_ref = c.entity_ref
 and i.trend_window = w.trend_window
left join prs as p
  on p.entity_ref = c.entity_ref
 and p.trend_window = w.trend_window

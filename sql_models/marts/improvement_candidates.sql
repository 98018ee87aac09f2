/* Evidence-backed next steps: one row per rule that fires for a component (or, for
the survey rule, a group). Every rule compares the subject with its OWN history, never
with other teams: the recent window (DORA_RULE_RECENT_DAYS) against the baseline before
it (DORA_RULE_BASELINE_DAYS), or the group's latest survey against its previous one.
A rule fires when the recent value is past its threshold and no better than the
baseline (not improving by itself); severity is high when it got worse by at least
DORA_RULE_TREND_RATIO, else medium. Both windows need DORA_RULE_MIN_SAMPLE events
(DORA_RULE_MIN_INCIDENTS for time to restore). `evidence` holds every number the
finding quotes. Rules and thresholds: docs/published-schema.md.
grain: entity_ref, rule */
with params as (
    select
        current_setting('dora.as_of')::timestamptz as as_of,
        current_setting('dora.survey_min_respondents')::int as k,
        current_setting('dora.rule_min_sample')::int as min_sample,
        current_setting('dora.rule_min_incidents')::int as min_incidents,
        current_setting('dora.rule_review_wait_hours')::numeric as review_wait_hours,
        current_setting('dora.rule_change_failure_pct')::numeric as change_failure_pct,
        current_setting('dora.rule_restore_minutes')::numeric as restore_minutes,
        current_setting('dora.rule_low_deploys_per_week')::numeric as low_deploys_per_week,
        current_setting('dora.rule_large_pr_lines')::numeric as large_pr_lines,
        current_setting('dora.rule_lead_time_coverage_pct')::numeric as lead_time_coverage_pct,
        current_setting('dora.rule_survey_response_pct')::numeric as survey_response_pct,
        current_setting('dora.rule_trend_ratio')::numeric as trend_ratio,
        current_setting('dora.rule_recent_days')::int + current_setting('dora.rule_baseline_days')::int
            as survey_max_age_days
),
trend as (
    select
        r.entity_ref,
        r.owner_ref,
        ic.has_production_deployments,
        r.days as recent_days,
        b.days as baseline_days,
        r.window_start as recent_start,
        r.window_end as recent_end,
        r.deployments as r_deployments,
        b.deployments as b_deployments,
        r.failed_deployments as r_failed,
        b.failed_deployments as b_failed,
        round(100.0 * r.failed_deployments / nullif(r.deployments, 0), 2) as r_cfr_pct,
        round(100.0 * b.failed_deployments / nullif(b.deployments, 0), 2) as b_cfr_pct,
        r.deployments_with_changes as r_linked,
        b.deployments_with_changes as b_linked,
        round(100.0 * r.deployments_with_changes / nullif(r.deployments, 0), 2) as r_coverage_pct,
        round(100.0 * b.deployments_with_changes / nullif(b.deployments, 0), 2) as b_coverage_pct,
        round(7.0 * r.deployments / r.days, 2) as r_deploys_per_week,
        round(7.0 * b.deployments / b.days, 2) as b_deploys_per_week,
        r.resolved_incidents as r_resolved,
        b.resolved_incidents as b_resolved,
        r.incidents as r_incidents,
        round(r.median_restore_minutes::numeric, 1) as r_restore_minutes,
        round(b.median_restore_minutes::numeric, 1) as b_restore_minutes,
        round(r.max_restore_minutes::numeric, 1) as r_max_restore_minutes,
        r.merged_prs as r_prs,
        b.merged_prs as b_prs,
        r.reviewed_prs as r_reviewed,
        b.reviewed_prs as b_reviewed,
        round(r.median_review_wait_hours::numeric, 1) as r_review_wait_hours,
        round(b.median_review_wait_hours::numeric, 1) as b_review_wait_hours,
        r.prs_waiting_over_threshold as r_waiting_long,
        round(r.median_pr_lines::numeric, 0) as r_pr_lines,
        round(b.median_pr_lines::numeric, 0) as b_pr_lines,
        r.deployed_prs as r_deployed_prs,
        r.prs_matched_by_sha as r_matched_by_sha,
        r.rework_deployments as r_rework,
        b.rework_deployments as b_rework,
        round(100.0 * r.rework_deployments / nullif(r.deployments, 0), 2) as r_rework_pct,
        round(100.0 * b.rework_deployments / nullif(b.deployments, 0), 2) as b_rework_pct
    from dora_intermediate.int_component_trends as r
    join dora_intermediate.int_component_trends as b
      on b.entity_ref = r.entity_ref
     and b.trend_window = 'baseline'
    join dora_intermediate.int_components as ic
      on ic.entity_ref = r.entity_ref
    where r.trend_window = 'recent'
),
long_review_wait as (
    select
        t.entity_ref,
        t.owner_ref as group_ref,
        'long_review_wait' as rule,
        'review_wait_hours' as metric,
        case when t.r_review_wait_hours >= p.trend_ratio * t.b_review_wait_hours then 'high' else 'medium' end as severity,
        format(
            'PRs waited a median %s h for a first review over the last %s days (%s reviewed PRs; %s waited more than %s h), %s %s h in the %s days before.',
            t.r_review_wait_hours, t.recent_days, t.r_reviewed, t.r_waiting_long, p.review_wait_hours,
            case when t.r_review_wait_hours > t.b_review_wait_hours then 'up from' else 'as slow as' end,
            t.b_review_wait_hours, t.baseline_days
        ) as finding,
        'Make review ownership explicit: a CODEOWNERS file and a review rotation so every PR has a named reviewer, and a team agreement on a first review within one working day.' as suggestion,
        jsonb_build_object(
            'recent_days', t.recent_days, 'baseline_days', t.baseline_days,
            'recent_median_review_wait_hours', t.r_review_wait_hours,
            'baseline_median_review_wait_hours', t.b_review_wait_hours,
            'recent_reviewed_prs', t.r_reviewed, 'baseline_reviewed_prs', t.b_reviewed,
            'recent_prs_waiting_over_threshold', t.r_waiting_long,
            'threshold_hours', p.review_wait_hours
        ) as evidence
    from trend as t
    cross join params as p
    where t.r_reviewed >= p.min_sample
      and t.b_reviewed >= p.min_sample
      and t.r_review_wait_hours >= p.review_wait_hours
      and t.r_review_wait_hours >= t.b_review_wait_hours
),
-- The two deploy-share rules (change failure rate, rework rate) are one shape: a share of
-- the recent production deploys at or over the change-failure bar and not better than
-- the component's own baseline. Rework (DORA 2024) has no published bands: its rule uses
-- the change-failure bar, the other instability measure, and fires only while the rate
-- is rising against the baseline (a steady fix-forward habit is not news); a change
-- failure rate fires when it is not improving.
deploy_share_rules as (
    select
        t.entity_ref,
        t.owner_ref as group_ref,
        r.rule,
        r.metric,
        case when r.r_pct >= p.trend_ratio * r.b_pct then 'high' else 'medium' end as severity,
        format(
            r.finding,
            r.r_count, t.r_deployments, t.recent_days, r.r_pct,
            r.b_count, t.b_deployments, r.b_pct, t.baseline_days
        ) as finding,
        r.suggestion,
        jsonb_build_object(
            'recent_days', t.recent_days, 'baseline_days', t.baseline_days,
            'recent_deployments', t.r_deployments, 'recent_' || r.counted, r.r_count,
            'recent_' || r.metric, r.r_pct,
            'baseline_deployments', t.b_deployments, 'baseline_' || r.counted, r.b_count,
            'baseline_' || r.metric, r.b_pct,
            'threshold_pct', p.change_failure_pct
        ) as evidence
    from trend as t
    cross join params as p
    cross join lateral (
        values
            ('high_change_failure_rate', 'change_failure_rate_pct', 'failed_deployments',
             t.r_failed, t.r_cfr_pct, t.b_failed, t.b_cfr_pct, false,
             '%s of the last %s production deploys (last %s days) caused an incident (%s %%), against %s of %s (%s %%) in the %s days before; consider a smoke-test workflow.',
             'Add a smoke-test workflow: automated checks against production right after each deploy that roll back when they fail; ship risky changes behind a canary or a feature flag.'),
            ('rising_rework_rate', 'rework_rate_pct', 'rework_deployments',
             t.r_rework, t.r_rework_pct, t.b_rework, t.b_rework_pct, true,
             '%s of the last %s production deploys (last %s days) were rework, made while an incident caused by an earlier deploy was still open (%s %%), up from %s of %s (%s %%) in the %s days before.',
             'Make going back cheaper than fixing forward: a one-step rollback to the last good deploy, and a short review of each incident that needed several deploys to settle.')
    ) as r(rule, metric, counted, r_count, r_pct, b_count, b_pct, must_rise, finding, suggestion)
    where t.r_deployments >= p.min_sample
      and t.b_deployments >= p.min_sample
      and r.r_pct >= p.change_failure_pct
      and (r.r_pct > r.b_pct or (r.r_pct = r.b_pct and not r.must_rise))
),
slow_restore as (
    select
        t.entity_ref,
        t.owner_ref as group_ref,
        'slow_restore' as rule,
        'time_to_restore_minutes' as metric,
        case when t.r_restore_minutes >= p.trend_ratio * t.b_restore_minutes then 'high' else 'medium' end as severity,
        format(
            'Restoring service took a median %s min (%s h) over %s resolved incidents in the last %s days, the longest %s h; %s %s min over %s incidents in the %s days before.',
            t.r_restore_minutes, round(t.r_restore_minutes / 60, 1), t.r_resolved, t.recent_days,
            round(t.r_max_restore_minutes / 60, 1),
            case when t.r_restore_minutes > t.b_restore_minutes then 'up from' else 'as slow as' end,
            t.b_restore_minutes, t.b_resolved, t.baseline_days
        ) as finding,
        'Make restoring routine: automate rollback to the last good deploy (one click or automatic on a failed health check) and link a runbook with the first diagnostic steps from every alert.' as suggestion,
        jsonb_build_object(
            'recent_days', t.recent_days, 'baseline_days', t.baseline_days,
            'recent_median_restore_minutes', t.r_restore_minutes,
            'baseline_median_restore_minutes', t.b_restore_minutes,
            'recent_max_restore_minutes', t.r_max_restore_minutes,
            'recent_resolved_incidents', t.r_resolved, 'baseline_resolved_incidents', t.b_resolved,
            'recent_incidents', t.r_incidents,
            'threshold_minutes', p.restore_minutes
        ) as evidence
    from trend as t
    cross join params as p
    where t.r_resolved >= p.min_incidents
      and t.b_resolved >= p.min_incidents
      and t.r_restore_minutes >= p.restore_minutes
      and t.r_restore_minutes >= t.b_restore_minutes
),
large_batches as (
    select
        t.entity_ref,
        t.owner_ref as group_ref,
        'low_deploy_frequency_large_prs' as rule,
        'deploys_per_week' as metric,
        case when t.r_deploys_per_week * p.trend_ratio <= t.b_deploys_per_week then 'high' else 'medium' end as severity,
        format(
            '%s production deploy%s in the last %s days (%s a week, %s a week in the %s days before) while the median PR changed %s lines (%s PRs merged).',
            t.r_deployments, case when t.r_deployments = 1 then '' else 's' end,
            t.recent_days, t.r_deploys_per_week, t.b_deploys_per_week, t.baseline_days,
            t.r_pr_lines, t.r_prs
        ) as finding,
        'Ship smaller batches: split work into PRs of a few hundred lines at most, merge unfinished work behind feature flags, and deploy every merge instead of collecting releases.' as suggestion,
        jsonb_build_object(
            'recent_days', t.recent_days, 'baseline_days', t.baseline_days,
            'recent_deployments', t.r_deployments, 'baseline_deployments', t.b_deployments,
            'recent_deploys_per_week', t.r_deploys_per_week,
            'baseline_deploys_per_week', t.b_deploys_per_week,
            'recent_merged_prs', t.r_prs, 'recent_median_pr_lines', t.r_pr_lines,
            'baseline_median_pr_lines', t.b_pr_lines,
            'threshold_deploys_per_week', p.low_deploys_per_week,
            'threshold_pr_lines', p.large_pr_lines
        ) as evidence
    from trend as t
    cross join params as p
    where t.has_production_deployments
      and t.r_prs >= p.min_sample
      and t.b_prs + t.b_deployments > 0
      and t.r_deploys_per_week < p.low_deploys_per_week
      and t.r_pr_lines >= p.large_pr_lines
      and t.r_deploys_per_week <= t.b_deploys_per_week
),
low_lead_time_coverage as (
    select
        t.entity_ref,
        t.owner_ref as group_ref,
        'low_lead_time_coverage' as rule,
        'lead_time_coverage_pct' as metric,
        case when t.r_coverage_pct * p.trend_ratio <= t.b_coverage_pct then 'high' else 'medium' end as severity,
        format(
            'Only %s of %s production deploys in the last %s days could be linked to a merged PR (%s %%, against %s %% in the %s days before); %s of the %s PRs merged in the window that reached production matched their deploy by commit SHA.',
            t.r_linked, t.r_deployments, t.recent_days, t.r_coverage_pct, t.b_coverage_pct, t.baseline_days,
            t.r_matched_by_sha, t.r_deployed_prs
        ) as finding,
        'Make each deploy report the commit that was merged: with squash merges deploy the squash commit (or report the PR head SHA), with merge commits deploy the merge commit; check that the github.com/project-slug annotation maps the repository to this component.' as suggestion,
        jsonb_build_object(
            'recent_days', t.recent_days, 'baseline_days', t.baseline_days,
            'recent_deployments', t.r_deployments, 'recent_linked_deployments', t.r_linked,
            'recent_coverage_pct', t.r_coverage_pct,
            'baseline_deployments', t.b_deployments, 'baseline_linked_deployments', t.b_linked,
            'baseline_coverage_pct', t.b_coverage_pct,
            'recent_deployed_prs', t.r_deployed_prs, 'recent_prs_matched_by_sha', t.r_matched_by_sha,
            'threshold_pct', p.lead_time_coverage_pct
        ) as evidence
    from trend as t
    cross join params as p
    where t.r_deployments >= p.min_sample
      and t.b_deployments >= p.min_sample
      and t.r_coverage_pct < p.lead_time_coverage_pct
      and t.r_coverage_pct <= t.b_coverage_pct
),
surveys as (
    select
        d.*,
        lag(d.survey_id) over w as previous_survey_id,
        lag(d.respondents) over w as previous_respondents,
        lag(d.eligible_members) over w as previous_eligible_members,
        row_number() over (partition by d.group_ref order by d.period_start desc, d.survey_id desc) as recency
    from dora_intermediate.int_survey_group_disclosure as d
    cross join params as p
    where d.period_start < p.as_of
    window w as (partition by d.group_ref order by d.period_start, d.survey_id)
),
survey_rates as (
    select
        s.*,
        round(100.0 * s.respondents / nullif(s.eligible_members, 0), 1) as rate_pct,
        round(100.0 * s.previous_respondents / nullif(s.previous_eligible_members, 0), 1) as previous_rate_pct
    from surveys as s
    where s.recency = 1
      and exists (select 1 from dora_staging.stg_group_members as m where m.group_ref = s.group_ref)
),
low_survey_response as (
    select
        s.group_ref as entity_ref,
        s.group_ref,
        'low_survey_response_rate' as rule,
        'survey_response_rate_pct' as metric,
        case when s.rate_pct * p.trend_ratio <= s.previous_rate_pct then 'high' else 'medium' end as severity,
        format(
            '%s of %s members answered %s (%s %%), against %s %% in %s.%s',
            s.respondents, s.eligible_members, s.survey_id, s.rate_pct, s.previous_rate_pct,
            s.previous_survey_id,
            case
                when s.suppressed and s.eligible_members < p.k then format(
                    ' The group has fewer than %s members, so its scores stay suppressed; its results show only in its parent group.', p.k)
                when s.suppressed then format(
                    ' With fewer than %s respondents the team''s scores were suppressed.', p.k)
                else ''
            end
        ) as finding,
        'Make answering cheap: a two-question pulse instead of a long form, announced in the team channel with a clear close date, and share back what changed since the last survey.' as suggestion,
        jsonb_build_object(
            'survey_id', s.survey_id, 'previous_survey_id', s.previous_survey_id,
            'respondents', s.respondents, 'eligible_members', s.eligible_members,
            'response_rate_pct', s.rate_pct, 'previous_response_rate_pct', s.previous_rate_pct,
            'suppressed', s.suppressed, 'min_respondents', p.k,
            'threshold_pct', p.survey_response_pct
        ) as evidence
    from survey_rates as s
    cross join params as p
    where s.period_end >= p.as_of - make_interval(days => p.survey_max_age_days)
      and s.rate_pct < p.survey_response_pct
      and s.rate_pct <= s.previous_rate_pct
),
candidates as (
    select * from long_review_wait
    union all
    select * from deploy_share_rules
    union all
    select * from slow_restore
    union all
    select * from large_batches
    union all
    select * from low_lead_time_coverage
    union all
    select * from low_survey_response
)
select
    c.entity_ref,                               -- the component (or, for survey rules, the group) the finding is about
    c.group_ref,                                -- the owning group (the group itself for group findings); NULL for fallback components
    c.rule,                                     -- long_review_wait | high_change_failure_rate | slow_restore | low_deploy_frequency_large_prs | low_lead_time_coverage | low_survey_response_rate | rising_rework_rate
    c.metric,                                   -- the measure the rule looks at
    c.severity,                                 -- high: worse than its own baseline by DORA_RULE_TREND_RATIO or more; medium: not improving
    c.finding,                                  -- what the numbers say, with the numbers
    c.suggestion,                               -- what to try next
    c.evidence,                                 -- every number behind the finding (jsonb), thresholds included
    now() as computed_at                        -- when this row was built
from candidates as c

/* DORA metrics per group and ISO week (Monday, UTC), pooled over the group's components
as in team_metrics.
grain: group_ref, week_start 
incremental: week_start */
select
    m.subject_ref as group_ref,                 -- group:namespace/name
    g.parent_ref,                               -- parent group; NULL at the root
    (m.period_start at time zone 'UTC')::date as week_start,  -- ISO Monday, UTC
    m.deployments,
    m.deploy_days,
    m.deploys_per_day,
    m.deployment_frequency_tier,
    m.median_lead_time_hours,
    m.lead_time_changes,
    m.lead_time_coverage_pct,
    m.lead_time_tier,
    m.change_failure_rate_pct,
    m.failed_deployments,
    m.change_failure_tier,
    m.median_time_to_restore_minutes,
    m.incidents,
    m.time_to_restore_tier,
    m.failed_attempts,
    m.open_incidents,
    m.median_failed_deployment_recovery_minutes,
    m.recovered_deployments,
    m.failed_deployment_recovery_tier,
    m.rework_deployments,
    m.rework_rate_pct,
    m.direct_changes,                           -- of lead_time_changes: commits pushed to the default branch without a PR
    now() as computed_at
from dora_intermediate.int_subject_period_metrics as m
left join dora_staging.stg_catalog_groups as g
  on g.group_ref = m.subject_ref
where m.subject_kind = 'group'
  and m.period_kind = 'week'
  and m.period_start >= current_setting('dora.dirty_since')::timestamptz

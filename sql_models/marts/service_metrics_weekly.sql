/* DORA metrics per component and ISO week (Monday, UTC): one row per component and
week from its first event to the week holding as_of (that last week may be partial).
Same measures and definitions as service_metrics over [week_start, week_start + 7d).
grain: entity_ref, week_start 
incremental: week_start */
select
    m.subject_ref as entity_ref,                -- component:namespace/name
    c.owner_ref,                                -- owning group; NULL for fallback refs
    (m.period_start at time zone 'UTC')::date as week_start,  -- ISO Monday, UTC
    m.deployments,
    m.deploy_days,
    m.deploys_per_day,                          -- deployments / 7
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
join dora_intermediate.int_components as c
  on c.entity_ref = m.subject_ref
where m.subject_kind = 'component'
  and m.period_kind = 'week'
  and m.period_start >= current_setting('dora.dirty_since')::timestamptz

/* DORA metrics per component over rolling windows: one row per component and
window_days in (7, 30, 90), the window being [as_of - window_days, as_of).
Components are the catalog's plus fallback refs for events no catalog entry claims.
See docs/metrics.md for every definition.
grain: entity_ref, window_days */
select
    m.subject_ref as entity_ref,                -- component:namespace/name
    c.owner_ref,                                -- owning group; NULL for fallback refs
    m.period_days as window_days,               -- 7, 30 or 90
    m.period_start as window_start,             -- inclusive
    m.period_end as window_end,                 -- exclusive (the as_of of the run)
    m.deployments,                              -- successful production deployments
    m.deploy_days,                              -- distinct UTC days with a deployment
    m.deploys_per_day,                          -- deployments / window_days
    m.deployment_frequency_tier,                -- elite | high | medium | low; NULL: never deployed to production
    m.median_lead_time_hours,                   -- median first commit -> production of changes shipped in the window
    m.lead_time_changes,                        -- changes measured: PRs and direct changes
    m.lead_time_coverage_pct,                   -- share of deployments that shipped >= 1 PR or direct change
    m.lead_time_tier,                           -- tier of the median lead time
    m.change_failure_rate_pct,                  -- failed_deployments / deployments, percent
    m.failed_deployments,                       -- deployments with >= 1 blamed incident
    m.change_failure_tier,                      -- tier of the change failure rate
    m.median_time_to_restore_minutes,           -- median resolved - opened of resolved incidents opened in the window
    m.incidents,                                -- incidents opened in the window, resolved or not
    m.time_to_restore_tier,                     -- tier of the median time to restore
    m.failed_attempts,                          -- failed production deploy attempts (not deployments)
    m.open_incidents,                           -- incidents opened in the window still unresolved
    m.median_failed_deployment_recovery_minutes,  -- median finished -> latest resolution of the blamed incidents, of the window's recovered failed deployments
    m.recovered_deployments,                    -- failed deployments whose blamed incidents are all resolved
    m.failed_deployment_recovery_tier,          -- tier of the median failed deployment recovery time (time-to-restore bands)
    m.rework_deployments,                       -- deployments that finished while an incident blamed on an earlier deploy of the component was open
    m.rework_rate_pct,                          -- rework_deployments / deployments, percent; no tier
    m.direct_changes,                           -- of lead_time_changes: commits pushed to the default branch without a PR
    now() as computed_at                        -- when this row was built
from dora_intermediate.int_subject_period_metrics as m
join dora_intermediate.int_components as c
  on c.entity_ref = m.subject_ref
where m.subject_kind = 'component'
  and m.period_kind = 'window'

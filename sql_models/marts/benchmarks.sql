/* The tier thresholds in force: one row per metric and tier, from dora_lib.tier_bands
(the same rows every tier column is computed from).
grain: metric, tier */
select
    b.metric,                                   -- deploys_per_day | median_lead_time_hours | change_failure_rate_pct | median_time_to_restore_minutes | median_failed_deployment_recovery_minutes
    b.tier,                                     -- elite | high | medium | low
    b.tier_rank,                                -- 1 = elite .. 4 = low
    b.lower_bound,                              -- NULL: unbounded
    b.lower_inclusive,                          -- the lower bound belongs to the tier
    b.upper_bound,                              -- NULL: unbounded
    b.upper_inclusive,                          -- the upper bound belongs to the tier
    case when b.lower_inclusive then '[' else '(' end
        || coalesce(round(b.lower_bound, 4)::text, '-inf') || ', '
        || coalesce(round(b.upper_bound, 4)::text, 'inf')
        || case when b.upper_inclusive then ']' else ')' end as bounds,  -- interval notation
    b.unit,                                     -- unit of the metric
    b.source                                    -- where the thresholds come from
from dora_lib.tier_bands as b

import { ComponentMetrics, GroupMetrics, ImprovementCandidate } from '../api';

const window = (days: number, extra: Record<string, unknown> = {}) => ({
  entity_ref: 'component:default/payments-api',
  owner_ref: 'group:default/atlas',
  window_days: days,
  window_start: '2026-11-07T00:00:00.000Z',
  window_end: '2026-12-07T00:00:00.000Z',
  deployments: days === 7 ? 3 : 24,
  deploy_days: days === 7 ? 3 : 18,
  deploys_per_day: days === 7 ? 0.4286 : 0.8,
  deployment_frequency_tier: 'high',
  median_lead_time_hours: 30.5,
  lead_time_changes: days === 7 ? 2 : 31,
  lead_time_coverage_pct: 87.5,
  lead_time_tier: 'high',
  change_failure_rate_pct: 12.5,
  failed_deployments: 3,
  change_failure_tier: 'medium',
  median_time_to_restore_minutes: 95,
  incidents: 4,
  time_to_restore_tier: 'high',
  failed_attempts: 1,
  open_incidents: 1,
  computed_at: '2026-12-07T02:00:00.000Z',
  ...extra,
});

export const componentMetrics: ComponentMetrics = {
  entityRef: 'component:default/payments-api',
  ownerRef: 'group:default/atlas',
  computedAt: '2026-12-07T02:00:00.000Z',
  windows: [window(7), window(30), window(90)],
  weekly: [4, 6, 5, 7, 3, 6].map((deployments, i) => ({
    entity_ref: 'component:default/payments-api',
    week_start: `2026-10-${String(26 + i).padStart(2, '0')}`,
    deployments,
    median_lead_time_hours: 20 + i,
    change_failure_rate_pct: i % 2 ? 0 : 20,
    median_time_to_restore_minutes: i % 3 ? null : 80,
  })),
};

/** The same component once the pipeline publishes the DORA 2023/2024 columns. */
export const componentMetricsWithAdditions: ComponentMetrics = {
  ...componentMetrics,
  windows: [7, 30, 90].map(d =>
    window(d, {
      median_failed_deployment_recovery_minutes: 130,
      recovered_deployments: 3,
      failed_deployment_recovery_tier: 'high',
      rework_deployments: 2,
      rework_rate_pct: 8.3,
      direct_changes: 4,
    }),
  ),
};

const survey = (id: string, extra: Record<string, unknown>) => ({
  group_ref: 'group:default/atlas',
  parent_ref: 'group:default/department-1',
  survey_id: id,
  period_start: '2026-12-01T09:00:00.000Z',
  period_end: '2026-12-06T17:00:00.000Z',
  eligible_members: 7,
  ...extra,
});

export const groupMetrics: GroupMetrics = {
  groupRef: 'group:default/atlas',
  parentRef: 'group:default/department-1',
  computedAt: '2026-12-07T02:00:00.000Z',
  windows: [7, 30, 90].map(d => ({ ...window(d), group_ref: 'group:default/atlas' })),
  weekly: componentMetrics.weekly,
  surveys: [
    survey('pulse-2026-12', {
      respondents: 3,
      response_rate_pct: 42.9,
      suppressed: true,
      suppression_reason: 'fewer_than_k',
      satisfaction_mean: null,
      flow_state_mean: null,
    }),
    survey('pulse-2026-11', {
      respondents: 6,
      response_rate_pct: 85.7,
      suppressed: false,
      suppression_reason: null,
      satisfaction_mean: 3.5,
      flow_state_mean: 3.17,
    }),
  ],
  activity: [
    { week_start: '2026-11-09', merged_prs: 9, median_pr_cycle_hours: 20.1, median_review_wait_hours: 5.5 },
    { week_start: '2026-11-16', merged_prs: 7, median_pr_cycle_hours: 18.2, median_review_wait_hours: 4 },
    { week_start: '2026-11-23', merged_prs: 11, median_pr_cycle_hours: 25, median_review_wait_hours: 7.25 },
    { week_start: '2026-11-30', merged_prs: 5, median_pr_cycle_hours: null, median_review_wait_hours: null },
  ],
};

export const candidates: ImprovementCandidate[] = [
  {
    entity_ref: 'component:default/payments-api',
    group_ref: 'group:default/atlas',
    rule: 'high_change_failure_rate',
    metric: 'change_failure_rate_pct',
    severity: 'high',
    finding: '3 of the last 8 production deploys (last 30 days) caused an incident (37.50 %).',
    suggestion: 'Add a smoke-test workflow.',
    evidence: { recent_failed: 3, recent_deployments: 8, threshold_pct: 15 },
    computed_at: '2026-12-07T02:00:00.000Z',
  },
];

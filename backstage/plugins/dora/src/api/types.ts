/** A published row: the columns of the dora_metrics table, as the backend returns them. */
export type MetricsRow = Record<string, any>;

export interface ComponentMetrics {
  entityRef: string;
  ownerRef: string | null;
  computedAt: string | null;
  /** service_metrics rows for window_days 7, 30 and 90. */
  windows: MetricsRow[];
  /** service_metrics_weekly rows, the last 26 weeks. */
  weekly: MetricsRow[];
}

export interface GroupMetrics {
  groupRef: string;
  parentRef: string | null;
  computedAt: string | null;
  windows: MetricsRow[];
  weekly: MetricsRow[];
  /** team_space_survey rows, newest first; suppressed rows carry no scores. */
  surveys: MetricsRow[];
  /** team_space_activity_weekly rows, the last 26 weeks. */
  activity: MetricsRow[];
}

export interface ImprovementCandidate {
  entity_ref: string;
  group_ref: string | null;
  rule: string;
  metric: string;
  severity: string;
  finding: string;
  suggestion: string;
  evidence: Record<string, unknown> | null;
  computed_at: string;
}

export interface PendingSurvey {
  id: string;
  title: string;
  opens: string;
  closes: string;
}

export interface PendingSurveys {
  /** The groups the signed-in user may answer for. */
  groups: string[];
  surveys: PendingSurvey[];
}

export interface SurveyAnswer {
  satisfaction: number;
  flowState: number;
  blockers?: string;
  groupRef?: string;
}

export interface SurveySubmitted {
  surveyId: string;
  groupRef: string;
  submittedAt: string;
  replaced: boolean;
}

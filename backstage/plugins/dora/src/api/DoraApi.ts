import { createApiRef } from '@backstage/core-plugin-api';
import {
  ComponentMetrics,
  GroupMetrics,
  ImprovementCandidate,
  PendingSurveys,
  SurveyAnswer,
  SurveySubmitted,
} from './types';

/** The DORA backend plugin's routes. */
export interface DoraApi {
  /** undefined: nothing published for the component yet. */
  getComponentMetrics(entityRef: string): Promise<ComponentMetrics | undefined>;
  /** undefined: nothing published for the group yet. */
  getGroupMetrics(entityRef: string): Promise<GroupMetrics | undefined>;
  getImprovementCandidates(entityRef: string): Promise<ImprovementCandidate[]>;
  getPendingSurveys(): Promise<PendingSurveys>;
  submitSurvey(surveyId: string, answer: SurveyAnswer): Promise<SurveySubmitted>;
}

/** @public */
export const doraApiRef = createApiRef<DoraApi>({ id: 'plugin.dora.service' });

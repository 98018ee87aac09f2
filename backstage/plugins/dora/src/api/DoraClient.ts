import { DiscoveryApi, FetchApi } from '@backstage/core-plugin-api';
import { parseEntityRef } from '@backstage/catalog-model';
import { ResponseError } from '@backstage/errors';
import { DoraApi } from './DoraApi';
import {
  ComponentMetrics,
  GroupMetrics,
  ImprovementCandidate,
  PendingSurveys,
  SurveyAnswer,
  SurveySubmitted,
} from './types';

/** Talks to the `dora` backend plugin through the app's authenticated fetch. */
export class DoraClient implements DoraApi {
  constructor(
    private readonly options: { discoveryApi: DiscoveryApi; fetchApi: FetchApi },
  ) {}

  async getComponentMetrics(entityRef: string) {
    return this.getOptional<ComponentMetrics>(`/components/${path(entityRef, false)}`);
  }

  async getGroupMetrics(entityRef: string) {
    return this.getOptional<GroupMetrics>(`/groups/${path(entityRef, false)}`);
  }

  async getImprovementCandidates(entityRef: string) {
    const body = await this.request<{ candidates: ImprovementCandidate[] }>(
      `/candidates/${path(entityRef, true)}`,
    );
    return body.candidates;
  }

  async getPendingSurveys() {
    return this.request<PendingSurveys>('/surveys/pending');
  }

  async submitSurvey(surveyId: string, answer: SurveyAnswer) {
    return this.request<SurveySubmitted>(
      `/surveys/${encodeURIComponent(surveyId)}/responses`,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(answer),
      },
    );
  }

  private async getOptional<T>(route: string): Promise<T | undefined> {
    const response = await this.fetch(route);
    if (response.status === 404) return undefined;
    if (!response.ok) throw await ResponseError.fromResponse(response);
    return (await response.json()) as T;
  }

  private async request<T>(route: string, init?: RequestInit): Promise<T> {
    const response = await this.fetch(route, init);
    if (!response.ok) throw await ResponseError.fromResponse(response);
    return (await response.json()) as T;
  }

  private async fetch(route: string, init?: RequestInit): Promise<Response> {
    const base = await this.options.discoveryApi.getBaseUrl('dora');
    return this.options.fetchApi.fetch(`${base}${route}`, init);
  }
}

function path(entityRef: string, withKind: boolean): string {
  const ref = parseEntityRef(entityRef);
  const parts = withKind ? [ref.kind, ref.namespace, ref.name] : [ref.namespace, ref.name];
  return parts.map(p => encodeURIComponent(p.toLocaleLowerCase('en-US'))).join('/');
}

/**
 * DORA + SPACE frontend plugin: entity and team cards, survey banner and page,
 * improvement candidates. This entry point is for the legacy frontend system; the new
 * frontend system imports `@internal/backstage-plugin-dora/alpha`.
 *
 * @packageDocumentation
 */
export {
  doraPlugin,
  rootRouteRef,
  EntityDoraCard,
  EntityTeamDoraCard,
  SurveyBanner,
  DoraPage,
} from './plugin';
export { ImprovementCandidates } from './components/ImprovementCandidates';
export { EntityCandidatesContent } from './components/EntityCandidatesContent';
export { doraApiRef, DoraClient } from './api';
export type * from './api/types';
export type { DoraApi } from './api';

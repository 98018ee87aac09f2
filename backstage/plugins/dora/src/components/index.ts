export { EntityDoraCard } from './EntityDoraCard';
export { EntityTeamDoraCard } from './EntityTeamDoraCard';
export { ImprovementCandidates } from './ImprovementCandidates';
export { SurveyBanner } from './SurveyBanner';
export { SurveyForm } from './SurveyPage';
export { DoraPage } from './DoraPage';
export { EntityCandidatesContent } from './EntityCandidatesContent';

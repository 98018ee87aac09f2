import React from 'react';
import { Route, Routes, useLocation, useParams } from 'react-router-dom';
import useAsync from 'react-use/esm/useAsync';
import { useApi } from '@backstage/core-plugin-api';
import {
  Content,
  ContentHeader,
  Header,
  InfoCard,
  Link,
  Page,
  Progress,
  ResponseErrorPanel,
} from '@backstage/core-components';
import Typography from '@material-ui/core/Typography';
import { doraApiRef } from '../api';
import { ImprovementCandidates } from './ImprovementCandidates';
import { SurveyForm } from './SurveyPage';
import { lastDay, REMINDER } from './format';

function CandidatesRoute() {
  const entity = new URLSearchParams(useLocation().search).get('entity');
  if (!entity) {
    return (
      <Typography variant="body1">
        Open the improvement candidates from a component’s or team’s DORA card.
      </Typography>
    );
  }
  return <ImprovementCandidates entityRef={entity.toLocaleLowerCase('en-US')} />;
}

function SurveyRoute() {
  const { surveyId } = useParams();
  return <SurveyForm surveyId={surveyId ?? ''} />;
}

function PendingSurveysList() {
  const api = useApi(doraApiRef);
  const state = useAsync(() => api.getPendingSurveys(), [api]);
  if (state.loading) return <Progress />;
  if (state.error) return <ResponseErrorPanel error={state.error} />;
  const surveys = state.value?.surveys ?? [];
  return (
    <InfoCard title="Your open surveys">
      {surveys.length === 0 ? (
        <Typography variant="body1">Nothing to answer right now. Thank you!</Typography>
      ) : (
        surveys.map(s => (
          <Typography key={s.id} variant="body1">
            <Link to={`survey/${encodeURIComponent(s.id)}`}>{s.title}</Link> (open until{' '}
            {lastDay(s.closes)})
          </Typography>
        ))
      )}
    </InfoCard>
  );
}

/** The plugin's page, mounted at /dora: surveys and improvement candidates. */
export function DoraPage() {
  return (
    <Page themeId="tool">
      <Header title="DORA & SPACE" subtitle={REMINDER} />
      <Content>
        <ContentHeader title="" />
        <Routes>
          <Route path="/" element={<PendingSurveysList />} />
          <Route path="/candidates" element={<CandidatesRoute />} />
          <Route path="/survey/:surveyId" element={<SurveyRoute />} />
        </Routes>
      </Content>
    </Page>
  );
}

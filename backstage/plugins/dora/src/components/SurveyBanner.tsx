import React from 'react';
import useAsync from 'react-use/esm/useAsync';
import { useApi } from '@backstage/core-plugin-api';
import { LinkButton } from '@backstage/core-components';
import Box from '@material-ui/core/Box';
import Paper from '@material-ui/core/Paper';
import Typography from '@material-ui/core/Typography';
import { doraApiRef } from '../api';
import { DORA_PAGE_PATH } from './EntityDoraCard';
import { lastDay } from './format';

/**
 * A home-page banner shown only while the signed-in user has an open survey they have
 * not answered. Renders nothing otherwise, also when the survey service cannot be
 * reached: a home page must not show an error for an optional prompt.
 */
export function SurveyBanner() {
  const api = useApi(doraApiRef);
  const state = useAsync(() => api.getPendingSurveys(), [api]);
  const survey = state.value?.surveys[0];
  if (!survey) return null;
  const more = (state.value?.surveys.length ?? 1) - 1;
  return (
    <Paper
      elevation={0}
      role="region"
      aria-label="team survey"
      style={{ background: '#e3f2fd', borderLeft: '4px solid #1976d2', padding: 16 }}
    >
      <Box display="flex" alignItems="center" justifyContent="space-between" flexWrap="wrap" style={{ gap: 8 }}>
        <Box>
          <Typography variant="h6">{survey.title}</Typography>
          <Typography variant="body2">
            Three questions, under a minute. Answers are only shown per team, and only once at
            least five people have answered. Open until {lastDay(survey.closes)}
            {more > 0 ? ` · ${more} more survey${more > 1 ? 's' : ''} waiting` : ''}.
          </Typography>
        </Box>
        <LinkButton
          variant="contained"
          color="primary"
          to={`${DORA_PAGE_PATH}/survey/${encodeURIComponent(survey.id)}`}
        >
          Answer the survey
        </LinkButton>
      </Box>
    </Paper>
  );
}

/** The home page widget: the banner, or a quiet line when nothing is waiting. */
export function SurveyWidgetContent() {
  const api = useApi(doraApiRef);
  const state = useAsync(() => api.getPendingSurveys(), [api]);
  if (state.loading) return <></>;
  if (state.value?.surveys.length) return <SurveyBanner />;
  return (
    <Typography variant="body2" color="textSecondary">
      No team survey is waiting for you.
    </Typography>
  );
}

import React from 'react';
import useAsync from 'react-use/esm/useAsync';
import { useApi } from '@backstage/core-plugin-api';
import { EmptyState, InfoCard } from '@backstage/core-components';
import Box from '@material-ui/core/Box';
import Chip from '@material-ui/core/Chip';
import List from '@material-ui/core/List';
import ListItem from '@material-ui/core/ListItem';
import Typography from '@material-ui/core/Typography';
import { doraApiRef, ImprovementCandidate } from '../api';
import { CardStates } from './CardStates';
import { REMINDER } from './format';

function Evidence(props: { evidence: ImprovementCandidate['evidence'] }) {
  if (!props.evidence) return null;
  const entries = Object.entries(props.evidence).filter(([, v]) => typeof v !== 'object');
  return (
    <Typography variant="caption" color="textSecondary" component="div">
      {entries.map(([k, v]) => `${k.replace(/_/g, ' ')}: ${v}`).join(' · ')}
    </Typography>
  );
}

/** Evidence-backed next steps for a component, or a group and its sub-teams. */
export function ImprovementCandidates(props: { entityRef: string }) {
  const api = useApi(doraApiRef);
  const state = useAsync(() => api.getImprovementCandidates(props.entityRef), [api, props.entityRef]);
  const title = `What to try next: ${props.entityRef}`;
  const none = {
    title: 'No improvement candidates',
    description: 'No rule fired: nothing measured here is past its threshold and getting worse.',
  };
  return (
    <CardStates
      title={title}
      state={state}
      errorTitle="Improvement candidates could not be loaded"
      isEmpty={() => false}
      emptyTitle={none.title}
      emptyDescription={none.description}
    >
      {candidates => (
        <InfoCard title={title} subheader="Each finding compares the subject with its own history, never with other teams.">
          {candidates.length === 0 ? (
            <EmptyState missing="content" title={none.title} description={none.description} />
          ) : (
            <List dense>
              {candidates.map(c => (
                <ListItem key={`${c.entity_ref}-${c.rule}`} divider data-testid={`candidate-${c.rule}`}>
                  <Box>
                    <Box display="flex" alignItems="center" style={{ gap: 8 }}>
                      <Chip
                        size="small"
                        label={c.severity}
                        color={c.severity === 'high' ? 'secondary' : 'default'}
                      />
                      <Typography variant="body2">
                        <b>{c.entity_ref}</b> · {c.metric.replace(/_/g, ' ')}
                      </Typography>
                    </Box>
                    <Typography variant="body2">{c.finding}</Typography>
                    <Typography variant="body2" color="primary">
                      {c.suggestion}
                    </Typography>
                    <Evidence evidence={c.evidence} />
                  </Box>
                </ListItem>
              ))}
            </List>
          )}
          <Typography variant="caption" color="textSecondary">
            {REMINDER}
          </Typography>
        </InfoCard>
      )}
    </CardStates>
  );
}

import React, { useState } from 'react';
import useAsync from 'react-use/esm/useAsync';
import { useApi } from '@backstage/core-plugin-api';
import { InfoCard, Progress, ResponseErrorPanel } from '@backstage/core-components';
import Box from '@material-ui/core/Box';
import Button from '@material-ui/core/Button';
import FormControl from '@material-ui/core/FormControl';
import FormControlLabel from '@material-ui/core/FormControlLabel';
import FormLabel from '@material-ui/core/FormLabel';
import MenuItem from '@material-ui/core/MenuItem';
import Radio from '@material-ui/core/Radio';
import RadioGroup from '@material-ui/core/RadioGroup';
import TextField from '@material-ui/core/TextField';
import Typography from '@material-ui/core/Typography';
import { doraApiRef, SurveySubmitted } from '../api';
import { lastDay } from './format';

const SCALE = [1, 2, 3, 4, 5];

function ScaleQuestion(props: {
  name: string;
  label: string;
  low: string;
  high: string;
  value?: number;
  onChange: (value: number) => void;
}) {
  return (
    <FormControl component="fieldset" margin="normal" required>
      <FormLabel component="legend">{props.label}</FormLabel>
      <RadioGroup
        row
        name={props.name}
        value={props.value ? String(props.value) : ''}
        onChange={e => props.onChange(Number(e.target.value))}
      >
        {SCALE.map(n => (
          <FormControlLabel
            key={n}
            value={String(n)}
            control={<Radio color="primary" inputProps={{ 'aria-label': `${props.name} ${n}` }} />}
            label={n === 1 ? `1 ${props.low}` : n === 5 ? `5 ${props.high}` : String(n)}
          />
        ))}
      </RadioGroup>
    </FormControl>
  );
}

/** The three-question survey, submit, thanks. */
export function SurveyForm(props: { surveyId: string }) {
  const api = useApi(doraApiRef);
  const pending = useAsync(() => api.getPendingSurveys(), [api]);
  const [satisfaction, setSatisfaction] = useState<number>();
  const [flowState, setFlowState] = useState<number>();
  const [blockers, setBlockers] = useState('');
  const [groupRef, setGroupRef] = useState<string>();
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<Error>();
  const [done, setDone] = useState<SurveySubmitted>();

  if (pending.loading) return <Progress />;
  if (pending.error) {
    return <ResponseErrorPanel error={pending.error} title="The survey could not be loaded" />;
  }
  if (done) {
    return (
      <InfoCard title="Thank you">
        <Typography variant="body1" paragraph data-testid="survey-thanks">
          Your answer to {done.surveyId} counts for {done.groupRef}
          {done.replaced ? ' and replaces your earlier one' : ''}.
        </Typography>
        <Typography variant="body2" color="textSecondary">
          Results are shown per team on its page, and only once at least five people have
          answered. Your blockers are read by no dashboard.
        </Typography>
      </InfoCard>
    );
  }
  const survey = pending.value?.surveys.find(s => s.id === props.surveyId);
  const groups = pending.value?.groups ?? [];
  if (!survey) {
    return (
      <InfoCard title="Survey">
        <Typography variant="body1" data-testid="survey-not-pending">
          There is no open survey “{props.surveyId}” waiting for you: it has closed, or you
          have answered it already.
        </Typography>
      </InfoCard>
    );
  }
  const group = groupRef ?? (groups.length === 1 ? groups[0] : undefined);
  const ready = !!satisfaction && !!flowState && !!group && !submitting;
  const submit = async () => {
    setSubmitting(true);
    setError(undefined);
    try {
      setDone(
        await api.submitSurvey(survey.id, {
          satisfaction: satisfaction!,
          flowState: flowState!,
          blockers: blockers.trim() || undefined,
          groupRef: group,
        }),
      );
    } catch (e) {
      setError(e as Error);
    } finally {
      setSubmitting(false);
    }
  };
  return (
    <InfoCard title={survey.title} subheader={`Open until ${lastDay(survey.closes)}`}>
      <Box display="flex" flexDirection="column" maxWidth={640}>
        {groups.length > 1 ? (
          <TextField
            id="dora-survey-group"
            select
            label="Answer for the team"
            value={group ?? ''}
            onChange={e => setGroupRef(e.target.value)}
            margin="normal"
          >
            {groups.map(g => (
              <MenuItem key={g} value={g}>
                {g}
              </MenuItem>
            ))}
          </TextField>
        ) : null}
        <ScaleQuestion
          name="satisfaction"
          label="How satisfied are you with your work and tools this month?"
          low="very unsatisfied"
          high="very satisfied"
          value={satisfaction}
          onChange={setSatisfaction}
        />
        <ScaleQuestion
          name="flow"
          label="How often could you work without interruption (in flow)?"
          low="almost never"
          high="almost always"
          value={flowState}
          onChange={setFlowState}
        />
        <TextField
          id="dora-survey-blockers"
          label="What slowed you down? (optional, never shown to anyone by name)"
          multiline
          minRows={3}
          value={blockers}
          onChange={e => setBlockers(e.target.value)}
          inputProps={{ maxLength: 2000 }}
          margin="normal"
          variant="outlined"
        />
        {error ? <ResponseErrorPanel error={error} title="Your answer was not saved" /> : null}
        <Box mt={2}>
          <Button variant="contained" color="primary" disabled={!ready} onClick={submit}>
            Submit
          </Button>
        </Box>
      </Box>
    </InfoCard>
  );
}

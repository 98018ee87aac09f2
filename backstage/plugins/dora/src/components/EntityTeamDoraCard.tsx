import React from 'react';
import { InfoCard, Link } from '@backstage/core-components';
import Box from '@material-ui/core/Box';
import Table from '@material-ui/core/Table';
import TableBody from '@material-ui/core/TableBody';
import TableCell from '@material-ui/core/TableCell';
import TableHead from '@material-ui/core/TableHead';
import TableRow from '@material-ui/core/TableRow';
import Typography from '@material-ui/core/Typography';
import { MetricsRow } from '../api';
import { CardStates, useEntityMetrics } from './CardStates';
import { DORA_PAGE_PATH, metricLines, MetricTable, Reminder, WindowPicker } from './EntityDoraCard';
import { Sparkline } from './Sparkline';
import { hours, isNumber, mean, percent, shortDate, suppressionText } from './format';

export function SurveyTable(props: { rows: MetricsRow[] }) {
  if (props.rows.length === 0) {
    return (
      <Typography variant="body2" color="textSecondary">
        No survey results for this team yet.
      </Typography>
    );
  }
  return (
    <Table size="small" aria-label="SPACE survey">
      <TableHead>
        <TableRow>
          <TableCell style={{ paddingLeft: 0 }}>Survey</TableCell>
          <TableCell>Answered</TableCell>
          <TableCell>Satisfaction</TableCell>
          <TableCell>Flow</TableCell>
        </TableRow>
      </TableHead>
      <TableBody>
        {props.rows.map(row => (
          <TableRow key={row.survey_id} data-testid={`survey-${row.survey_id}`}>
            <TableCell style={{ paddingLeft: 0 }}>
              <Typography variant="body2">{row.survey_id}</Typography>
              <Typography variant="caption" color="textSecondary">
                {shortDate(row.period_start)} – {shortDate(row.period_end)}
              </Typography>
            </TableCell>
            <TableCell>
              {row.respondents} of {row.eligible_members ?? '?'}
              <Typography variant="caption" color="textSecondary" component="div">
                {percent(row.response_rate_pct)} response rate
              </Typography>
            </TableCell>
            {row.suppressed ? (
              <TableCell colSpan={2}>
                <Typography variant="body2" color="textSecondary" data-testid="suppressed">
                  {suppressionText(row)}
                </Typography>
              </TableCell>
            ) : (
              <>
                <TableCell>{mean(row.satisfaction_mean)} / 5</TableCell>
                <TableCell>{mean(row.flow_state_mean)} / 5</TableCell>
              </>
            )}
          </TableRow>
        ))}
      </TableBody>
    </Table>
  );
}

export function ActivitySummary(props: { activity: MetricsRow[] }) {
  const { activity } = props;
  if (activity.length === 0) {
    return (
      <Typography variant="body2" color="textSecondary">
        No pull request activity published for this team.
      </Typography>
    );
  }
  const recent = activity.slice(-4);
  const merged = recent.reduce((n, w) => n + (isNumber(w.merged_prs) ? w.merged_prs : 0), 0);
  const latest = [...activity].reverse().find(w => isNumber(w.median_pr_cycle_hours));
  return (
    <Box display="flex" alignItems="center" flexWrap="wrap" style={{ gap: 16 }}>
      <Typography variant="body2" data-testid="activity-merged">
        {merged} PRs merged in the last {recent.length} weeks
      </Typography>
      <Sparkline values={activity.map(w => w.merged_prs)} label="merged PRs per week" />
      <Typography variant="body2" color="textSecondary">
        {latest
          ? `median PR cycle ${hours(latest.median_pr_cycle_hours)}, review wait ${hours(latest.median_review_wait_hours)} (week of ${latest.week_start})`
          : 'cycle times withheld: too few authors per week'}
      </Typography>
    </Box>
  );
}

/** The team's pooled DORA numbers, SPACE survey and PR activity, for a Group page. */
export function EntityTeamDoraCard(props: { title?: string }) {
  const { ref, state, windowDays, setWindowDays } = useEntityMetrics((api, entityRef) =>
    api.getGroupMetrics(entityRef),
  );
  const title = props.title ?? 'Team DORA & SPACE';
  const candidatesLink = `${DORA_PAGE_PATH}/candidates?entity=${encodeURIComponent(ref)}`;
  return (
    <CardStates
      title={title}
      state={state}
      errorTitle="Team metrics could not be loaded"
      isEmpty={() => false}
      emptyTitle="No team metrics yet"
      emptyDescription={`The pipeline has published nothing for ${ref}: the team owns no component it knows and has no survey results.`}
    >
      {data => {
        const row = data.windows.find(w => w.window_days === windowDays) ?? data.windows[0];
        return (
          <InfoCard
            title={title}
            subheader={row ? `Pooled over the team's components (sub-teams included), last ${row.window_days} days` : undefined}
            action={row ? <WindowPicker value={row.window_days} onChange={setWindowDays} /> : undefined}
            deepLink={{ title: 'What to try next', link: candidatesLink }}
          >
            {row ? (
              <MetricTable lines={metricLines(row, data.weekly)} />
            ) : (
              <Typography variant="body2">This team owns no component with DORA metrics.</Typography>
            )}
            <Box mt={2}>
              <Typography variant="subtitle2">SPACE survey</Typography>
              <SurveyTable rows={data.surveys} />
            </Box>
            <Box mt={2}>
              <Typography variant="subtitle2">Pull request activity</Typography>
              <ActivitySummary activity={data.activity} />
            </Box>
            <Box mt={1} display="flex" justifyContent="space-between" flexWrap="wrap">
              <Reminder />
              <Link to={candidatesLink}>improvement candidates</Link>
            </Box>
          </InfoCard>
        );
      }}
    </CardStates>
  );
}

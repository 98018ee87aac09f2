import React from 'react';
import { InfoCard, Link } from '@backstage/core-components';
import Box from '@material-ui/core/Box';
import Table from '@material-ui/core/Table';
import TableBody from '@material-ui/core/TableBody';
import TableCell from '@material-ui/core/TableCell';
import TableRow from '@material-ui/core/TableRow';
import Button from '@material-ui/core/Button';
import ButtonGroup from '@material-ui/core/ButtonGroup';
import Typography from '@material-ui/core/Typography';
import { MetricsRow } from '../api';
import { CardStates, useEntityMetrics } from './CardStates';
import { Sparkline } from './Sparkline';
import { TierChip } from './TierChip';
import {
  has,
  hours,
  isNumber,
  minutes,
  percent,
  perDay,
  plural,
  REMINDER,
  THIN_SAMPLE,
} from './format';

/** Where the plugin's page is mounted (both frontend systems default to /dora). */
export const DORA_PAGE_PATH = '/dora';

export interface MetricLine {
  key: string;
  label: string;
  value: string;
  tier?: string | null;
  tiered: boolean;
  sample: string;
  thin: boolean;
  trend: Array<number | null>;
}

/** The lines of the card for one window row; the DORA 2023/2024 ones only when published. */
export function metricLines(row: MetricsRow, weekly: MetricsRow[]): MetricLine[] {
  const series = (column: string) => weekly.map(w => (isNumber(w[column]) ? w[column] : null));
  const deployments = isNumber(row.deployments) ? row.deployments : 0;
  const lines: MetricLine[] = [
    {
      key: 'deployment_frequency',
      label: 'Deployment frequency',
      value: perDay(row.deploys_per_day),
      tier: row.deployment_frequency_tier,
      tiered: true,
      sample: `${plural(deployments, 'deployment')} on ${plural(row.deploy_days, 'day')}`,
      thin: false,
      trend: series('deployments'),
    },
    {
      key: 'lead_time',
      label: 'Lead time for changes',
      value: hours(row.median_lead_time_hours),
      tier: row.lead_time_tier,
      tiered: true,
      sample: `median of ${plural(row.lead_time_changes, 'change')}${
        has(row, 'direct_changes') ? ` (${row.direct_changes ?? 0} without a PR)` : ''
      }; ${isNumber(row.lead_time_coverage_pct) ? `${row.lead_time_coverage_pct.toFixed(0)} %` : 'no'} of deployments linked to a change`,
      thin:
        (isNumber(row.lead_time_changes) && row.lead_time_changes < THIN_SAMPLE) ||
        (isNumber(row.lead_time_coverage_pct) && row.lead_time_coverage_pct < 50),
      trend: series('median_lead_time_hours'),
    },
    {
      key: 'change_failure_rate',
      label: 'Change failure rate',
      value: percent(row.change_failure_rate_pct),
      tier: row.change_failure_tier,
      tiered: true,
      sample: `${row.failed_deployments ?? 0} of ${plural(deployments, 'deployment')} caused an incident`,
      thin: deployments < THIN_SAMPLE,
      trend: series('change_failure_rate_pct'),
    },
    {
      key: 'time_to_restore',
      label: 'Time to restore service',
      value: minutes(row.median_time_to_restore_minutes),
      tier: row.time_to_restore_tier,
      tiered: true,
      sample: `median of ${plural(row.incidents, 'incident')}${
        isNumber(row.open_incidents) && row.open_incidents > 0 ? `, ${row.open_incidents} still open` : ''
      }`,
      thin: isNumber(row.incidents) && row.incidents < THIN_SAMPLE,
      trend: series('median_time_to_restore_minutes'),
    },
  ];
  if (has(row, 'median_failed_deployment_recovery_minutes')) {
    lines.push({
      key: 'failed_deployment_recovery',
      label: 'Failed deployment recovery',
      value: minutes(row.median_failed_deployment_recovery_minutes),
      tier: row.failed_deployment_recovery_tier,
      tiered: has(row, 'failed_deployment_recovery_tier'),
      sample: `median of ${plural(row.recovered_deployments, 'recovered deployment')}`,
      thin: !isNumber(row.recovered_deployments) || row.recovered_deployments < THIN_SAMPLE,
      trend: series('median_failed_deployment_recovery_minutes'),
    });
  }
  if (has(row, 'rework_rate_pct')) {
    lines.push({
      key: 'rework_rate',
      label: 'Rework rate',
      value: percent(row.rework_rate_pct),
      tiered: false,
      sample: `${row.rework_deployments ?? 0} of ${plural(deployments, 'deployment')} shipped while an earlier deploy's incident was open`,
      thin: deployments < THIN_SAMPLE,
      trend: series('rework_rate_pct'),
    });
  }
  return lines;
}

export function MetricTable(props: { lines: MetricLine[] }) {
  return (
    <Table size="small" aria-label="DORA metrics">
      <TableBody>
        {props.lines.map(line => (
          <TableRow key={line.key} data-testid={`dora-${line.key}`}>
            <TableCell style={{ paddingLeft: 0 }}>
              <Typography variant="body2">{line.label}</Typography>
              <Typography variant="caption" color="textSecondary">
                {line.sample}
                {line.thin ? ' · thin sample' : ''}
              </Typography>
            </TableCell>
            <TableCell style={{ whiteSpace: 'nowrap' }}>
              <Typography variant="h6" component="span">
                {line.value}
              </Typography>
            </TableCell>
            <TableCell>{line.tiered ? <TierChip tier={line.tier} /> : <Typography variant="caption">no tier (DORA sets none)</Typography>}</TableCell>
            <TableCell style={{ paddingRight: 0 }}>
              <Sparkline values={line.trend} label={`${line.label} per week`} />
            </TableCell>
          </TableRow>
        ))}
      </TableBody>
    </Table>
  );
}

export function WindowPicker(props: { value: number; onChange: (days: number) => void }) {
  return (
    <ButtonGroup size="small" aria-label="window">
      {[7, 30, 90].map(days => (
        <Button
          key={days}
          variant={days === props.value ? 'contained' : 'outlined'}
          color={days === props.value ? 'primary' : 'default'}
          aria-pressed={days === props.value}
          onClick={() => props.onChange(days)}
        >
          {days} d
        </Button>
      ))}
    </ButtonGroup>
  );
}

export function Reminder() {
  return (
    <Typography variant="caption" color="textSecondary" component="p">
      {REMINDER}
    </Typography>
  );
}

/** The component's DORA card for the entity page. */
export function EntityDoraCard(props: { title?: string }) {
  const { ref, state, windowDays, setWindowDays } = useEntityMetrics((api, entityRef) =>
    api.getComponentMetrics(entityRef),
  );
  const title = props.title ?? 'DORA metrics';
  return (
    <CardStates
      title={title}
      state={state}
      errorTitle="DORA metrics could not be loaded"
      isEmpty={data => data.windows.length === 0}
      emptyTitle="No DORA metrics yet"
      emptyDescription={`The pipeline has published nothing for ${ref}: it is not in the catalog snapshot it read, or it has no deployments, changes or incidents yet.`}
    >
      {data => {
        const row = data.windows.find(w => w.window_days === windowDays) ?? data.windows[0];
        return (
          <InfoCard
            title={title}
            subheader={`Last ${row.window_days} days · trends: last ${data.weekly.length} weeks`}
            action={<WindowPicker value={row.window_days} onChange={setWindowDays} />}
            deepLink={{
              title: 'What to try next',
              link: `${DORA_PAGE_PATH}/candidates?entity=${encodeURIComponent(ref)}`,
            }}
          >
            {row.deployment_frequency_tier === null && row.deployments === 0 ? (
              <Typography variant="body2" paragraph>
                Never deployed to production (a library?): deployment frequency is not rated.
              </Typography>
            ) : null}
            <MetricTable lines={metricLines(row, data.weekly)} />
            <Box mt={1} display="flex" justifyContent="space-between" flexWrap="wrap">
              <Reminder />
              <Typography variant="caption" color="textSecondary">
                computed {data.computedAt ? new Date(data.computedAt).toISOString().slice(0, 16).replace('T', ' ') : '—'} UTC ·{' '}
                <Link to={`${DORA_PAGE_PATH}/candidates?entity=${encodeURIComponent(ref)}`}>
                  improvement candidates
                </Link>
              </Typography>
            </Box>
          </InfoCard>
        );
      }}
    </CardStates>
  );
}

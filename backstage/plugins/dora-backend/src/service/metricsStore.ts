import { escapeIdentifier, Pool, PoolClient } from 'pg';
import { unavailable } from './db';

type Row = Record<string, unknown>;

/** Weeks of history the cards plot. */
export const WEEKS = 26;

export interface ComponentMetrics {
  entityRef: string;
  ownerRef: string | null;
  computedAt: string | null;
  /** service_metrics rows, window_days 7, 30, 90 (every published column). */
  windows: Row[];
  /** service_metrics_weekly rows of the last 26 weeks up to the published as-of week. */
  weekly: Row[];
}

export interface GroupMetrics {
  groupRef: string;
  parentRef: string | null;
  computedAt: string | null;
  windows: Row[];
  weekly: Row[];
  /** team_space_survey rows, newest first; suppressed rows as published (scores NULL). */
  surveys: Row[];
  /** team_space_activity_weekly rows of the last 26 weeks. */
  activity: Row[];
}

/**
 * Reads the published `dora_metrics` tables, and nothing else of the warehouse. The
 * tables are selected with `*` so columns added later (DORA 2023/2024 measures, direct
 * changes) reach the card without a release of this plugin.
 */
export class MetricsStore {
  private readonly t: (table: string) => string;

  constructor(private readonly pool: Pool, schema: string) {
    this.t = table => `${escapeIdentifier(schema)}.${escapeIdentifier(table)}`;
  }

  async component(ref: string): Promise<ComponentMetrics | undefined> {
    return this.snapshot(async client => {
      const windows = await client.query(
        `select * from ${this.t('service_metrics')} where entity_ref = $1 order by window_days`,
        [ref],
      );
      if (windows.rowCount === 0) return undefined;
      const weekly = await client.query(
        `select * from ${this.t('service_metrics_weekly')}
         where entity_ref = $1
           and week_start > (select max(week_start) from ${this.t('service_metrics_weekly')}
                             where entity_ref = $1) - $2::int * 7
         order by week_start`,
        [ref, WEEKS],
      );
      const first = windows.rows[0];
      return {
        entityRef: ref,
        ownerRef: (first.owner_ref as string) ?? null,
        computedAt: iso(first.computed_at),
        windows: windows.rows,
        weekly: weekly.rows,
      };
    });
  }

  async group(ref: string): Promise<GroupMetrics | undefined> {
    return this.snapshot(async client => {
      const windows = await client.query(
        `select * from ${this.t('team_metrics')} where group_ref = $1 order by window_days`,
        [ref],
      );
      const surveys = await client.query(
        `select * from ${this.t('team_space_survey')}
         where group_ref = $1 order by period_start desc, survey_id limit 6`,
        [ref],
      );
      if (windows.rowCount === 0 && surveys.rowCount === 0) return undefined;
      const weekly = await client.query(
        `select * from ${this.t('team_metrics_weekly')}
         where group_ref = $1
           and week_start > (select max(week_start) from ${this.t('team_metrics_weekly')}
                             where group_ref = $1) - $2::int * 7
         order by week_start`,
        [ref, WEEKS],
      );
      const activity = await client.query(
        `select * from ${this.t('team_space_activity_weekly')}
         where group_ref = $1
           and week_start > (select max(week_start) from ${this.t('team_space_activity_weekly')}
                             where group_ref = $1) - $2::int * 7
         order by week_start`,
        [ref, WEEKS],
      );
      const first = windows.rows[0] ?? surveys.rows[0];
      return {
        groupRef: ref,
        parentRef: (first.parent_ref as string) ?? null,
        computedAt: iso(first.computed_at),
        windows: windows.rows,
        weekly: weekly.rows,
        surveys: surveys.rows.map(stripSurveyRow),
        activity: activity.rows,
      };
    });
  }

  /** A component's candidates, or a group's and its descendant groups'. */
  async candidates(ref: string): Promise<Row[]> {
    return this.snapshot(async client => {
      const order = `order by c.severity = 'high' desc, c.group_ref, c.entity_ref, c.rule`;
      if (ref.startsWith('group:')) {
        const result = await client.query(
          `with recursive tree as (
               select $1::text as group_ref
               union
               select t.group_ref
               from (select distinct group_ref, parent_ref from ${this.t('team_metrics')}
                     union
                     select distinct group_ref, parent_ref from ${this.t('team_space_survey')}) as t
               join tree on t.parent_ref = tree.group_ref
           )
           select c.* from ${this.t('improvement_candidates')} as c
           join tree on tree.group_ref = c.group_ref
           ${order}`,
          [ref],
        );
        return result.rows;
      }
      const result = await client.query(
        `select c.* from ${this.t('improvement_candidates')} as c where c.entity_ref = $1 ${order}`,
        [ref],
      );
      return result.rows;
    });
  }

  /**
   * Every query of one answer in one read-only REPEATABLE READ transaction, so a page
   * never mixes two pipeline runs.
   */
  private async snapshot<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      return unavailable(error, 'the DORA metrics warehouse');
    }
    try {
      await client.query('begin isolation level repeatable read read only');
      const result = await work(client);
      await client.query('commit');
      return result;
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      return unavailable(error, 'the DORA metrics warehouse');
    } finally {
      client.release();
    }
  }
}

function iso(value: unknown): string | null {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : null;
}

/**
 * A published survey row as it is, but a suppressed row never carries a score even if a
 * column is added to the table later: the card must show "suppressed", not a number.
 */
function stripSurveyRow(row: Row): Row {
  if (!row.suppressed) return row;
  const out: Row = {};
  for (const [key, value] of Object.entries(row)) {
    const score = /^(satisfaction|flow_state)/.test(key);
    out[key] = score ? null : value;
  }
  return out;
}

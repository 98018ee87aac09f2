import { escapeIdentifier, Pool } from 'pg';
import { SurveyDefinition } from './config';
import { unavailable } from './db';

export interface SurveyAnswer {
  surveyId: string;
  userRef: string;
  groupRef: string;
  satisfaction: number;
  flowState: number;
  blockers?: string;
}

/**
 * The survey responses table the pipeline's survey source reads (SURVEY_DATABASE_URL,
 * SURVEY_TABLE): user_ref, group_ref, survey_id, submitted_at, satisfaction, flow_state,
 * blockers_text. Nothing here returns a response: only which surveys a user has answered.
 */
export class SurveyStore {
  private readonly table: string;
  private readonly schema?: string;

  constructor(
    private readonly pool: Pool,
    table: string,
    readonly surveys: SurveyDefinition[],
    private readonly createTable = true,
  ) {
    const [schema, name] = table.includes('.') ? table.split('.') : [undefined, table];
    this.schema = schema;
    this.table = schema
      ? `${escapeIdentifier(schema)}.${escapeIdentifier(name)}`
      : escapeIdentifier(name);
  }

  /** Creates the schema and table when missing (the pipeline's expected shape). */
  async ensureTable(): Promise<void> {
    const statements = [
      this.schema ? `create schema if not exists ${escapeIdentifier(this.schema)}` : undefined,
      `create table if not exists ${this.table} (
           id            bigserial primary key,
           user_ref      text not null,
           group_ref     text not null,
           survey_id     text not null,
           submitted_at  timestamptz not null default now(),
           satisfaction  integer not null check (satisfaction between 1 and 5),
           flow_state    integer not null check (flow_state between 1 and 5),
           blockers_text text
       )`,
      // One response per user and survey; also what the pipeline's day filter uses.
      `create unique index if not exists ${escapeIdentifier(indexName(this.table, 'user'))}
           on ${this.table} (survey_id, user_ref)`,
      `create index if not exists ${escapeIdentifier(indexName(this.table, 'submitted'))}
           on ${this.table} (submitted_at)`,
    ].filter(Boolean) as string[];
    try {
      for (const statement of statements) await this.pool.query(statement);
    } catch (error) {
      unavailable(error, 'the survey database');
    }
  }

  /** The ids among `surveyIds` that `userRef` has answered. */
  async answered(userRef: string, surveyIds: string[]): Promise<Set<string>> {
    if (surveyIds.length === 0) return new Set();
    try {
      const result = await this.pool.query(
        `select distinct survey_id from ${this.table} where user_ref = $1 and survey_id = any($2::text[])`,
        [userRef, surveyIds],
      );
      return new Set(result.rows.map(r => r.survey_id as string));
    } catch (error) {
      return unavailable(error, 'the survey database');
    }
  }

  /**
   * Stores an answer, replacing the user's earlier answer to the same survey. Works on a
   * table created without the unique index too: delete and insert under a lock keyed by
   * survey and user, in one transaction.
   */
  async submit(answer: SurveyAnswer, retried = false): Promise<{ replaced: boolean; submittedAt: string }> {
    let client;
    try {
      client = await this.pool.connect();
    } catch (error) {
      return unavailable(error, 'the survey database');
    }
    try {
      await client.query('begin');
      await client.query('select pg_advisory_xact_lock(hashtext($1))', [
        `dora-survey:${answer.surveyId}:${answer.userRef}`,
      ]);
      const removed = await client.query(
        `delete from ${this.table} where survey_id = $1 and user_ref = $2`,
        [answer.surveyId, answer.userRef],
      );
      const inserted = await client.query(
        `insert into ${this.table}
             (user_ref, group_ref, survey_id, submitted_at, satisfaction, flow_state, blockers_text)
         values ($1, $2, $3, now(), $4, $5, $6)
         returning submitted_at`,
        [
          answer.userRef,
          answer.groupRef,
          answer.surveyId,
          answer.satisfaction,
          answer.flowState,
          answer.blockers ?? null,
        ],
      );
      await client.query('commit');
      return {
        replaced: (removed.rowCount ?? 0) > 0,
        submittedAt: (inserted.rows[0].submitted_at as Date).toISOString(),
      };
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      if ((error as { code?: string }).code === '42P01' && this.createTable && !retried) {
        await this.ensureTable();
        return this.submit(answer, true);
      }
      return unavailable(error, 'the survey database');
    } finally {
      client.release();
    }
  }
}

function indexName(table: string, suffix: string): string {
  return `${table.replace(/"/g, '').replace(/\./g, '_')}_${suffix}_idx`;
}

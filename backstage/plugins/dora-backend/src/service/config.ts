import { Config } from '@backstage/config';
import { PoolConfig } from 'pg';

/** A survey in force, from `dora.surveys`. `opens` inclusive, `closes` exclusive. */
export interface SurveyDefinition {
  id: string;
  title: string;
  opens: Date;
  closes: Date;
}

export interface DoraSettings {
  metrics: PoolConfig;
  metricsSchema: string;
  survey?: { connection: PoolConfig; table: string; createTable: boolean };
  surveys: SurveyDefinition[];
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const DAY_MS = 24 * 60 * 60 * 1000;

/** `2026-12-01` is midnight UTC; with `endOfDay` the midnight after it (closes is inclusive). */
export function parseSurveyTime(value: string, key: string, endOfDay: boolean): Date {
  const dateOnly = DATE_ONLY.test(value);
  const parsed = new Date(dateOnly ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(parsed.getTime())) {
    throw new Error(`${key}: '${value}' is not a date (YYYY-MM-DD) or an ISO timestamp`);
  }
  return dateOnly && endOfDay ? new Date(parsed.getTime() + DAY_MS) : parsed;
}

function poolConfig(config: Config, key: string): PoolConfig {
  const value = config.get(key);
  if (typeof value === 'string') {
    return { connectionString: value };
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const c = config.getConfig(key);
    return {
      host: c.getOptionalString('host'),
      port: c.getOptionalNumber('port'),
      user: c.getOptionalString('user'),
      password: c.getOptionalString('password'),
      database: c.getOptionalString('database'),
      ssl: c.getOptional('ssl') as PoolConfig['ssl'],
    };
  }
  throw new Error(`${key} must be a postgres:// URL or connection fields`);
}

const TABLE_NAME = /^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$/i;

export function readDoraConfig(config: Config): DoraSettings {
  const metricsSchema =
    config.getOptionalString('dora.database.schema') ?? 'dora_metrics';
  const surveys = (config.getOptionalConfigArray('dora.surveys') ?? []).map(
    (s, i) => {
      const key = `dora.surveys[${i}]`;
      const survey = {
        id: s.getString('id'),
        title: s.getString('title'),
        opens: parseSurveyTime(s.getString('opens'), `${key}.opens`, false),
        closes: parseSurveyTime(s.getString('closes'), `${key}.closes`, true),
      };
      if (survey.closes <= survey.opens) {
        throw new Error(`${key}: closes must be after opens`);
      }
      return survey;
    },
  );
  const ids = surveys.map(s => s.id);
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate) {
    throw new Error(`dora.surveys: survey id '${duplicate}' appears twice`);
  }
  let survey: DoraSettings['survey'];
  if (config.has('dora.survey.database.connection')) {
    const table =
      config.getOptionalString('dora.survey.table') ?? 'dora.survey_responses';
    if (!TABLE_NAME.test(table)) {
      throw new Error(`dora.survey.table: '${table}' is not a [schema.]table name`);
    }
    survey = {
      connection: poolConfig(config, 'dora.survey.database.connection'),
      table,
      createTable: config.getOptionalBoolean('dora.survey.createTable') ?? true,
    };
  }
  return {
    metrics: poolConfig(config, 'dora.database.connection'),
    metricsSchema,
    survey,
    surveys,
  };
}

import { createServiceFactory } from '@backstage/backend-plugin-api';
import { coreServices } from '@backstage/backend-plugin-api';
import { Client } from 'pg';

/**
 * The warehouse prepared by backstage/run-tests.sh: `dora-pipeline demo` on the embedded
 * PostgreSQL, the reader role with a login. The tests fail, not skip, without it.
 */
export function testEnv() {
  const required = ['DORA_TEST_ADMIN_URL', 'DORA_TEST_READER_URL'];
  const missing = required.filter(name => !process.env[name]);
  if (missing.length) {
    throw new Error(
      `${missing.join(', ')} not set: run backstage/run-tests.sh, which prepares the warehouse with dora-pipeline demo`,
    );
  }
  return {
    adminUrl: process.env.DORA_TEST_ADMIN_URL!,
    readerUrl: process.env.DORA_TEST_READER_URL!,
    pipeline: process.env.DORA_TEST_PIPELINE,
    doraHome: process.env.DORA_TEST_HOME,
  };
}

/** Published rows, read directly (as the admin) to compare with what the routes answer. */
export async function query<T = Record<string, any>>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('set time zone utc');
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * The identity provider of the test: users and the groups they belong to, as a signed-in
 * user's ownership refs would come from the catalog (the synthetic organisation's users).
 */
export function userInfoFactory(memberships: Record<string, string[]>) {
  return createServiceFactory({
    service: coreServices.userInfo,
    deps: {},
    factory: () => ({
      async getUserInfo(credentials: any) {
        const userEntityRef: string = credentials.principal.userEntityRef;
        return {
          userEntityRef,
          ownershipEntityRefs: [userEntityRef, ...(memberships[userEntityRef] ?? [])],
        };
      },
    }),
  });
}

/**
 * A row read with node-postgres's default parsers, as the backend's JSON shows it:
 * numeric and bigint as numbers, timestamptz as ISO strings, dates as YYYY-MM-DD.
 */
export function asJson(row: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(row)) {
    if (v instanceof Date && DATE_COLUMNS.has(k)) {
      // node-postgres parses a date as local midnight.
      const pad = (n: number) => String(n).padStart(2, '0');
      out[k] = `${v.getFullYear()}-${pad(v.getMonth() + 1)}-${pad(v.getDate())}`;
    } else if (v instanceof Date) out[k] = v.toISOString();
    else if (typeof v === 'string' && NUMERIC_TEXT.test(v) && !TEXT_COLUMNS.test(k)) out[k] = Number(v);
    else out[k] = v;
  }
  return out;
}

const DATE_COLUMNS = new Set(['week_start']);
const NUMERIC_TEXT = /^-?\d+(\.\d+)?$/;
const TEXT_COLUMNS = /(_ref|_id|tier|reason|finding|suggestion|rule|metric|severity)$/;

import { LoggerService } from '@backstage/backend-plugin-api';
import { ServiceUnavailableError } from '@backstage/errors';
import { Pool, PoolConfig, types } from 'pg';

const NUMERIC = 1700;
const INT8 = 20;
const DATE = 1082;

// Counts and measures as JSON numbers (node-postgres returns numeric and bigint as
// strings); week starts stay 'YYYY-MM-DD' instead of becoming local-time Dates.
const typeParsers = {
  getTypeParser(oid: number, format?: any) {
    if (oid === NUMERIC) return (v: string) => Number.parseFloat(v);
    if (oid === INT8) return (v: string) => Number.parseInt(v, 10);
    if (oid === DATE) return (v: string) => v;
    return types.getTypeParser(oid, format);
  },
};

export function createPool(config: PoolConfig, logger: LoggerService, name: string): Pool {
  const pool = new Pool({
    max: 5,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
    statement_timeout: 15000,
    application_name: 'backstage-plugin-dora',
    ...config,
    types: typeParsers,
  });
  // An idle connection dropped by the server (restart, failover) must not crash the
  // backend: node-postgres emits it on the pool.
  pool.on('error', error => logger.warn(`${name}: idle connection lost: ${error.message}`));
  return pool;
}

// Connection-level failures: the database is down, restarting, unreachable or refuses us.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08004', '08006', '28P01', '3D000',
]);

/**
 * A database error as a 503 the frontend can show; anything else is rethrown. The
 * message names what is unavailable, never the connection string or password.
 */
export function unavailable(error: unknown, what: string): never {
  const e = error as { code?: string; message?: string };
  const timeout = /timeout/i.test(e?.message ?? '');
  if ((e?.code && UNAVAILABLE_CODES.has(e.code)) || timeout) {
    throw new ServiceUnavailableError(`${what} is unavailable (${e.code ?? 'timeout'})`);
  }
  if (e?.code === '42P01' || e?.code === '3F000') {
    throw new ServiceUnavailableError(`${what} is not published yet (${e.code}: ${e.message})`);
  }
  if (e?.code === '42501') {
    throw new ServiceUnavailableError(`${what}: permission denied (${e.message})`);
  }
  throw error;
}

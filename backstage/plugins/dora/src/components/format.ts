/** Presentation of published numbers: units, tiers, thin samples. Pure functions. */

export const TIER_COLOURS: Record<string, string> = {
  elite: '#1b5e20',
  high: '#2e7d32',
  medium: '#ef6c00',
  low: '#c62828',
};

export const REMINDER =
  'For finding systemic problems, not for grading people.';

/** Below this many events a median or rate is shown as thin. */
export const THIN_SAMPLE = 5;

export function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

export function hours(value: unknown): string {
  if (!isNumber(value)) return '—';
  if (value < 1) return `${Math.round(value * 60)} min`;
  if (value < 48) return `${value.toFixed(1)} h`;
  return `${(value / 24).toFixed(1)} days`;
}

export function minutes(value: unknown): string {
  if (!isNumber(value)) return '—';
  return value < 60 ? `${Math.round(value)} min` : hours(value / 60);
}

export function percent(value: unknown): string {
  return isNumber(value) ? `${value.toFixed(1)} %` : '—';
}

export function perDay(value: unknown): string {
  if (!isNumber(value)) return '—';
  if (value >= 1) return `${value.toFixed(1)} per day`;
  if (value * 7 >= 1) return `${(value * 7).toFixed(1)} per week`;
  if (value > 0) return `${(value * 30).toFixed(1)} per month`;
  return 'none';
}

export function mean(value: unknown): string {
  return isNumber(value) ? value.toFixed(2) : '—';
}

export function plural(n: unknown, one: string, many = `${one}s`): string {
  const count = isNumber(n) ? n : 0;
  return `${count} ${count === 1 ? one : many}`;
}

/** Whether a row has the column: newer pipeline versions add columns. */
export function has(row: Record<string, unknown> | undefined, column: string): boolean {
  return !!row && Object.prototype.hasOwnProperty.call(row, column);
}

export function suppressionText(row: Record<string, any>): string {
  if (row.suppression_reason === 'complementary') {
    return 'Not shown: it would reveal a smaller team’s answers';
  }
  return 'Not shown: fewer than k people answered';
}

export function shortDate(value: unknown): string {
  if (typeof value !== 'string') return '—';
  return value.slice(0, 10);
}

/**
 * The last day a survey accepts answers (UTC): `closes` is the exclusive end, so a survey
 * configured to close on 2026-12-14 (inclusive) ends at 2026-12-15T00:00Z and shows 2026-12-14.
 */
export function lastDay(closes: string): string {
  return new Date(new Date(closes).getTime() - 1).toISOString().slice(0, 10);
}

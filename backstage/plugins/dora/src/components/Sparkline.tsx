import React from 'react';
import { isNumber } from './format';

/**
 * A small inline trend: one point per week, gaps where the week has no value.
 * Deliberately axis-less: the number next to it is the reading, this is the shape.
 */
export function Sparkline(props: {
  values: Array<number | null | undefined>;
  label: string;
  width?: number;
  height?: number;
  colour?: string;
}) {
  const { values, label, width = 120, height = 28, colour = '#1976d2' } = props;
  const points = values.map((v, i) => ({ i, v })).filter(p => isNumber(p.v)) as Array<{
    i: number;
    v: number;
  }>;
  if (points.length < 2) {
    return (
      <span style={{ fontSize: 11, color: '#757575' }} aria-label={`${label}: not enough weeks`}>
        not enough weeks
      </span>
    );
  }
  const max = Math.max(...points.map(p => p.v));
  const min = Math.min(...points.map(p => p.v), 0);
  const span = max - min || 1;
  const x = (i: number) => (values.length <= 1 ? 0 : (i / (values.length - 1)) * (width - 4) + 2);
  const y = (v: number) => height - 2 - ((v - min) / span) * (height - 4);
  const d = points.map((p, n) => `${n === 0 ? 'M' : 'L'}${x(p.i).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
  const last = points[points.length - 1];
  return (
    <svg width={width} height={height} role="img" aria-label={`${label}, ${values.length} weeks`}>
      <path d={d} fill="none" stroke={colour} strokeWidth={1.5} />
      <circle cx={x(last.i)} cy={y(last.v)} r={2.5} fill={colour} />
    </svg>
  );
}

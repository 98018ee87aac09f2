import React from 'react';
import Chip from '@material-ui/core/Chip';
import { TIER_COLOURS } from './format';

export function TierChip(props: { tier?: string | null }) {
  const { tier } = props;
  if (!tier) {
    return <Chip size="small" label="no tier" variant="outlined" />;
  }
  return (
    <Chip
      size="small"
      label={tier}
      style={{ backgroundColor: TIER_COLOURS[tier] ?? '#616161', color: '#fff' }}
    />
  );
}

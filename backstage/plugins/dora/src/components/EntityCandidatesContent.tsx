import React from 'react';
import { stringifyEntityRef } from '@backstage/catalog-model';
import { useEntity } from '@backstage/plugin-catalog-react';
import { ImprovementCandidates } from './ImprovementCandidates';

/** The entity page tab: the improvement candidates of the entity in view. */
export function EntityCandidatesContent() {
  const { entity } = useEntity();
  return <ImprovementCandidates entityRef={stringifyEntityRef(entity).toLocaleLowerCase('en-US')} />;
}

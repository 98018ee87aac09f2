import React from 'react';
import { screen } from '@testing-library/react';
import { coreExtensionData, ExtensionDefinition } from '@backstage/frontend-plugin-api';
import {
  createExtensionTester,
  renderInTestApp,
  TestApiProvider,
} from '@backstage/frontend-test-utils';
import { EntityProvider } from '@backstage/plugin-catalog-react';
import { EntityCardBlueprint } from '@backstage/plugin-catalog-react/alpha';
import { Entity } from '@backstage/catalog-model';
import doraPlugin, { entityDoraCard, entityTeamDoraCard } from './alpha';
import { DoraApi, doraApiRef } from './api';
import { componentMetrics, groupMetrics } from './testing/fixtures';

// The new frontend system (what @backstage/create-app generates): the extensions render
// the same cards, on the entity kinds they are meant for.
jest.setTimeout(30_000);

const component: Entity = {
  apiVersion: 'backstage.io/v1alpha1',
  kind: 'Component',
  metadata: { name: 'payments-api', namespace: 'default' },
  spec: {},
};
const group: Entity = {
  apiVersion: 'backstage.io/v1alpha1',
  kind: 'Group',
  metadata: { name: 'atlas', namespace: 'default' },
  spec: {},
};

const api: Partial<DoraApi> = {
  getComponentMetrics: async () => componentMetrics,
  getGroupMetrics: async () => groupMetrics,
  getImprovementCandidates: async () => [],
};

async function renderCard(extension: ExtensionDefinition<any>, entity: Entity) {
  const tester = createExtensionTester(extension);
  const element = tester.get(coreExtensionData.reactElement) as React.ReactElement;
  await renderInTestApp(
    <TestApiProvider apis={[[doraApiRef, api as DoraApi]]}>
      <EntityProvider entity={entity}>{element}</EntityProvider>
    </TestApiProvider>,
  );
  return tester;
}

describe('new frontend system (alpha)', () => {
  it('the plugin is a frontend feature with id dora', () => {
    expect(doraPlugin.id).toBe('dora');
  });

  it('entity-card:dora/dora shows the component card, on Components only', async () => {
    const tester = await renderCard(entityDoraCard, component);
    expect(await screen.findByText('Deployment frequency')).toBeInTheDocument();
    expect(tester.get(EntityCardBlueprint.dataRefs.filterExpression)).toBe('kind:component');
  });

  it('entity-card:dora/team-dora shows the team card, on Groups only', async () => {
    const tester = await renderCard(entityTeamDoraCard, group);
    expect(await screen.findByText('SPACE survey')).toBeInTheDocument();
    expect(tester.get(EntityCardBlueprint.dataRefs.filterExpression)).toBe('kind:group');
  });
});

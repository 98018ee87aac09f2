/*
 * The dev app (legacy frontend system, @backstage/dev-utils): the cards on a fake entity
 * page whose entity comes from the URL (?name=payments-api), the home-page banner and
 * the plugin page, against the dev backend of plugins/dora-backend.
 */
import React from 'react';
import { createDevApp } from '@backstage/dev-utils';
import { Content, Header, Page } from '@backstage/core-components';
import { Entity } from '@backstage/catalog-model';
import { EntityProvider } from '@backstage/plugin-catalog-react';
import Grid from '@material-ui/core/Grid';
import {
  DoraPage,
  doraPlugin,
  EntityDoraCard,
  EntityTeamDoraCard,
  SurveyBanner,
} from '../src';

function EntityPage(props: { kind: 'Component' | 'Group'; children: React.ReactNode }) {
  const name = new URLSearchParams(window.location.search).get('name') ?? 'unknown';
  const entity: Entity = {
    apiVersion: 'backstage.io/v1alpha1',
    kind: props.kind,
    metadata: { name, namespace: 'default' },
    spec: {},
  };
  return (
    <EntityProvider entity={entity}>
      <Page themeId={props.kind === 'Group' ? 'home' : 'service'}>
        <Header title={name} subtitle={`${props.kind} · default`} />
        <Content>
          <Grid container spacing={3}>
            <Grid item xs={12} md={10} lg={8}>
              {props.children}
            </Grid>
          </Grid>
        </Content>
      </Page>
    </EntityProvider>
  );
}

createDevApp()
  .registerPlugin(doraPlugin)
  .addPage({
    path: '/component',
    title: 'Component',
    element: (
      <EntityPage kind="Component">
        <EntityDoraCard />
      </EntityPage>
    ),
  })
  .addPage({
    path: '/team',
    title: 'Team',
    element: (
      <EntityPage kind="Group">
        <EntityTeamDoraCard />
      </EntityPage>
    ),
  })
  .addPage({
    path: '/home',
    title: 'Home',
    element: (
      <Page themeId="home">
        <Header title="Welcome back" />
        <Content>
          <SurveyBanner />
        </Content>
      </Page>
    ),
  })
  .addPage({ path: '/dora', title: 'DORA', element: <DoraPage /> })
  .render();

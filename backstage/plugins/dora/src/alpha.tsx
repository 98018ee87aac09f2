/**
 * The plugin for the new frontend system (what `@backstage/create-app` generates since
 * 1.4x): install the package and it is discovered, or add it to `createApp({ features })`.
 *
 * @packageDocumentation
 */
import React from 'react';
import {
  ApiBlueprint,
  createFrontendPlugin,
  createRouteRef,
  discoveryApiRef,
  fetchApiRef,
  PageBlueprint,
} from '@backstage/frontend-plugin-api';
import {
  EntityCardBlueprint,
  EntityContentBlueprint,
} from '@backstage/plugin-catalog-react/alpha';
import { HomePageWidgetBlueprint } from '@backstage/plugin-home-react/alpha';
import { DoraClient, doraApiRef } from './api';

const rootRouteRef = createRouteRef();

/** The API client, for every extension of the plugin. */
export const doraApi = ApiBlueprint.make({
  params: defineParams =>
    defineParams({
      api: doraApiRef,
      deps: { discoveryApi: discoveryApiRef, fetchApi: fetchApiRef },
      factory: ({ discoveryApi, fetchApi }) => new DoraClient({ discoveryApi, fetchApi }),
    }),
});

/** The page at /dora: the survey and the improvement candidates. */
export const doraPage = PageBlueprint.make({
  params: {
    path: '/dora',
    title: 'DORA & SPACE',
    routeRef: rootRouteRef,
    noHeader: true,
    loader: () => import('./components/DoraPage').then(m => <m.DoraPage />),
  },
});

/** The component card on entity pages of kind Component. */
export const entityDoraCard = EntityCardBlueprint.make({
  name: 'dora',
  params: {
    filter: 'kind:component',
    loader: () => import('./components/EntityDoraCard').then(m => <m.EntityDoraCard />),
  },
});

/** The team card on entity pages of kind Group. */
export const entityTeamDoraCard = EntityCardBlueprint.make({
  name: 'team-dora',
  params: {
    filter: 'kind:group',
    loader: () => import('./components/EntityTeamDoraCard').then(m => <m.EntityTeamDoraCard />),
  },
});

/** A "DORA" tab on Component and Group pages: the improvement candidates. */
export const entityDoraContent = EntityContentBlueprint.make({
  name: 'dora',
  params: {
    path: '/dora',
    title: 'DORA',
    filter: 'kind:component,group',
    loader: () => import('./components/EntityCandidatesContent').then(m => <m.EntityCandidatesContent />),
  },
});

/** The home-page survey banner, as a home page widget. */
export const surveyBannerWidget = HomePageWidgetBlueprint.make({
  name: 'dora-survey',
  params: {
    name: 'DoraSurvey',
    title: 'Team survey',
    components: () =>
      import('./components/SurveyBanner').then(m => ({ Content: m.SurveyWidgetContent })),
  },
});

export default createFrontendPlugin({
  pluginId: 'dora',
  title: 'DORA & SPACE',
  routes: { root: rootRouteRef },
  extensions: [
    doraApi,
    doraPage,
    entityDoraCard,
    entityTeamDoraCard,
    entityDoraContent,
    surveyBannerWidget,
  ],
});

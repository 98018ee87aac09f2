import {
  createApiFactory,
  createComponentExtension,
  createPlugin,
  createRoutableExtension,
  createRouteRef,
  discoveryApiRef,
  fetchApiRef,
} from '@backstage/core-plugin-api';
import { DoraClient, doraApiRef } from './api';

/** @public */
export const rootRouteRef = createRouteRef({ id: 'dora' });

/**
 * The plugin for apps on the legacy frontend system (`@backstage/app-defaults`).
 * Apps on the new frontend system use `@internal/backstage-plugin-dora/alpha`.
 *
 * @public
 */
export const doraPlugin = createPlugin({
  id: 'dora',
  apis: [
    createApiFactory({
      api: doraApiRef,
      deps: { discoveryApi: discoveryApiRef, fetchApi: fetchApiRef },
      factory: ({ discoveryApi, fetchApi }) => new DoraClient({ discoveryApi, fetchApi }),
    }),
  ],
  routes: { root: rootRouteRef },
});

/** @public */
export const EntityDoraCard = doraPlugin.provide(
  createComponentExtension({
    name: 'EntityDoraCard',
    component: {
      lazy: () => import('./components/EntityDoraCard').then(m => m.EntityDoraCard),
    },
  }),
);

/** @public */
export const EntityTeamDoraCard = doraPlugin.provide(
  createComponentExtension({
    name: 'EntityTeamDoraCard',
    component: {
      lazy: () => import('./components/EntityTeamDoraCard').then(m => m.EntityTeamDoraCard),
    },
  }),
);

/** @public */
export const SurveyBanner = doraPlugin.provide(
  createComponentExtension({
    name: 'SurveyBanner',
    component: {
      lazy: () => import('./components/SurveyBanner').then(m => m.SurveyBanner),
    },
  }),
);

/** The page at /dora: the survey and the improvement candidates. @public */
export const DoraPage = doraPlugin.provide(
  createRoutableExtension({
    name: 'DoraPage',
    component: () => import('./components/DoraPage').then(m => m.DoraPage),
    mountPoint: rootRouteRef,
  }),
);

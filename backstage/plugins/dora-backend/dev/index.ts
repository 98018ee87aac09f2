/*
 * A dev backend: the dora plugin on a real Backstage backend, with a fixed signed-in user
 * instead of a sign-in flow (DORA_DEV_USER, member of DORA_DEV_GROUPS). For local
 * development and the browser test only; a real app uses its auth backend.
 */
import { createBackend } from '@backstage/backend-defaults';
import { coreServices, createServiceFactory } from '@backstage/backend-plugin-api';
import { mockCredentials, mockServices } from '@backstage/backend-test-utils';

const user = process.env.DORA_DEV_USER ?? 'user:default/atlas-dev7';
const groups = (process.env.DORA_DEV_GROUPS ?? 'group:default/atlas').split(',').filter(Boolean);

const backend = createBackend();
backend.add(mockServices.auth.factory());
backend.add(mockServices.httpAuth.factory({ defaultCredentials: mockCredentials.user(user) }));
backend.add(
  createServiceFactory({
    service: coreServices.userInfo,
    deps: {},
    factory: () => ({
      async getUserInfo() {
        return { userEntityRef: user, ownershipEntityRefs: [user, ...groups] };
      },
    }),
  }),
);
backend.add(import('../src'));
backend.start();

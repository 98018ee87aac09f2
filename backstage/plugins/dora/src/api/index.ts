export { doraApiRef } from './DoraApi';
export type { DoraApi } from './DoraApi';
export { DoraClient } from './DoraClient';
export * from './types';

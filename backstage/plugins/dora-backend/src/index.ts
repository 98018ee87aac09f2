/**
 * The DORA + SPACE backend plugin: reads the pipeline's published `dora_metrics` schema
 * and stores the in-portal survey responses the pipeline's survey source reads.
 *
 * @packageDocumentation
 */
export { doraPlugin as default } from './plugin';

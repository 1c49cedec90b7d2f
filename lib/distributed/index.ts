/**
 * scorefield/distributed: reference sets sharded over many machines, on BullMQ queues in Redis.
 * `ShardWorker` serves shards (row ranges of an .npy file, or rows handed in);
 * `ShardedReferenceSet` discovers them and offers `estimate` and `sample` with the options and
 * results of the in-process ReferenceSet. bullmq and ioredis are loaded only by this entry
 * point. See README: Distributed and docs/distributed.md.
 * @packageDocumentation
 */
// first: a coded error naming the optional packages when bullmq or ioredis is missing
import './peers';
export { ShardWorker } from './worker';
export type { ShardWorkerOptions, ShardSource } from './worker';
export { ShardedReferenceSet } from './sharded';
export type { ConnectOptions, ShardedSampleOptions, ShardedSampleResult } from './sharded';
export type { Connection, ShardInfo } from './common';
export { ScorefieldRemoteError } from '../errors';

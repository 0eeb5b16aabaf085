export * from './errors.js';
export * from './partitions.js';
export * from './provisioning.js';
export * from './write-queue.js';

export * from './access.js';
export * from './client.js';
export * from './errors.js';
export * from './frames.js';
export * from './hub.js';
export * from './replay.js';
export * from './topics.js';

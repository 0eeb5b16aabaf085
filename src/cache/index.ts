export * from './forge-cache.js';
export * from './rules.js';
export * from './tagged-cache.js';
export * from './tags.js';

/**
 * `forgebus/cache` — the node-local cache of a forge, kept correct on every node by the event
 * feed: `new ForgeCache(bus, options)`, tags and invalidation rules for the built-in events, and
 * the trust states a node goes through when it may have missed events.
 */
export {
  ForgeCache,
  type CacheState,
  type DisconnectedReads,
  type ForgeCacheOptions,
  type ForgeCacheStats,
} from './forge-cache.js';
export { DEFAULT_INVALIDATION_RULES, type InvalidationRule, type InvalidationRules } from './rules.js';
export { TaggedCache, type FillTicket, type TaggedCacheOptions, type TaggedCacheStats } from './tagged-cache.js';
export { CacheTags } from './tags.js';

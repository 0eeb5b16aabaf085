import { DiscoveryService } from '@nestjs/core';

export interface CachedSpec<A extends unknown[]> {
  /** Cache key from the method's arguments; must identify the result completely. */
  key: (...args: A) => string;
  /** Tags the result depends on (see CacheTags); invalidating any of them drops it. */
  tags: (...args: A) => string[];
}

/** The discoverable mark behind @Cached, read when ForgeCacheModule initialises. */
export const CachedMark = DiscoveryService.createDecorator<CachedSpec<unknown[]>>();

/**
 * Caches a provider method's result in the node's ForgeCache. Works for synchronous and async
 * methods. Results are shared between callers: treat them as immutable.
 *
 *   @Cached({ key: (o, n) => `repo:${o}/${n}`, tags: (o, n) => [CacheTags.repo({ owner: o, name: n })] })
 *   findRepo(owner: string, name: string) { … }
 */
export function Cached<A extends unknown[]>(spec: CachedSpec<A>) {
  return <R>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<(...args: A) => R>): void => {
    CachedMark(spec as CachedSpec<unknown[]>)(target, propertyKey, descriptor);
  };
}

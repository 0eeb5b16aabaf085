import type { DiscoverableDecorator, DiscoveryService, MetadataScanner } from '@nestjs/core';

export interface DecoratedMethod<M> {
  /** The provider (or controller) instance the method belongs to. */
  instance: Record<string, unknown>;
  methodName: string;
  method: (...args: unknown[]) => unknown;
  metadata: M;
  /** `<Class>.<method>`, for logs. */
  label: string;
}

/**
 * Every method of the application's singleton providers (and controllers, if asked) marked with
 * `decorator` (made by DiscoveryService.createDecorator): how @OnForgeEvent, @Cached and
 * @RepoWriteHandler are found at start-up. Discovery's `metadataKey` filter only knows
 * class-level uses of such decorators, so every provider's methods are scanned.
 */
export function findDecoratedMethods<M>(
  tools: { discovery: DiscoveryService; scanner: MetadataScanner },
  decorator: DiscoverableDecorator<M>,
  options: { controllers?: boolean } = {},
): DecoratedMethod<M>[] {
  const wrappers = [...tools.discovery.getProviders(), ...(options.controllers ? tools.discovery.getControllers() : [])];
  const found: DecoratedMethod<M>[] = [];
  for (const wrapper of wrappers) {
    const instance = wrapper.instance as Record<string, unknown> | undefined;
    if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
    for (const methodName of tools.scanner.getAllMethodNames(Object.getPrototypeOf(instance) as object)) {
      const method = instance[methodName];
      if (typeof method !== 'function') continue;
      const metadata = tools.discovery.getMetadataByDecorator(decorator, wrapper, methodName) as M | undefined;
      if (metadata === undefined) continue;
      found.push({ instance, methodName, method: method as (...args: unknown[]) => unknown, metadata, label: `${String(wrapper.name)}.${methodName}` });
    }
  }
  return found;
}

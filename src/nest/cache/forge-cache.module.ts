import { Injectable, Logger, Module, type DynamicModule, type OnApplicationShutdown, type OnModuleInit, type Provider } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, MetadataScanner } from '@nestjs/core';
import { boolean, checkOptions, ForgeBus, type OptionRules } from '../../bus/index.js';
import { FORGE_CACHE_OPTION_RULES } from '../../cache/forge-cache.js';
import { ForgeCache } from '../../cache/index.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from '../configurable-module.js';
import { findDecoratedMethods } from '../decorated-methods.js';
import { CachedMark } from './cached.decorator.js';
import {
  ConfigurableForgeCacheModule,
  FORGE_CACHE_OPTIONS,
  type ForgeCacheModuleAsyncOptions,
  type ForgeCacheModuleOptions,
} from './forge-cache.module-definition.js';

/** Wraps every @Cached method of every provider with the node's ForgeCache. */
@Injectable()
class CachedMethodsExplorer implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly cache: ForgeCache,
  ) {}

  onModuleInit(): void {
    const cache = this.cache;
    const methods = findDecoratedMethods({ discovery: this.discovery, scanner: this.scanner }, CachedMark);
    for (const { instance, methodName, method, metadata: spec } of methods) {
      // An own property shadows the prototype method, so internal `this.x()` calls are cached too.
      instance[methodName] = function cached(...args: unknown[]) {
        return cache.getOrLoad(spec.key(...args), spec.tags(...args), () => method.apply(instance, args));
      };
    }
  }

  onApplicationShutdown(): void {
    this.cache.close();
  }
}

const MODULE_OPTION_RULES: OptionRules<ForgeCacheModuleOptions & ForgeModuleExtras> = { ...FORGE_CACHE_OPTION_RULES, isGlobal: boolean };

const cacheProvider: Provider = {
  provide: ForgeCache,
  inject: [ForgeBus, FORGE_CACHE_OPTIONS],
  useFactory: (bus: ForgeBus, options: ForgeCacheModuleOptions) => {
    checkOptions('ForgeCacheModule', options, MODULE_OPTION_RULES);
    return new ForgeCache(bus, { logger: new Logger('ForgeCache'), ...options });
  },
};

function withCache(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), cacheProvider, CachedMethodsExplorer],
    exports: [ForgeCache, FORGE_CACHE_OPTIONS],
  };
}

/**
 * `ForgeCacheModule.forRoot(options)` / `forRootAsync(...)`: the node's ForgeCache (needs
 * ForgeBus, i.e. ForgeBusModule), and @Cached methods wired to it.
 *
 * Global by default (`isGlobal: true`), as it always was: the cache is the process's single
 * node-local cache, injected wherever a service reads or invalidates it. With `isGlobal: false`,
 * import it where ForgeCache is injected (@Cached methods are wrapped in any case).
 */
@Module({})
export class ForgeCacheModule extends ConfigurableForgeCacheModule {
  static override forRoot(options: ForgeCacheModuleOptions & ForgeModuleExtras = {}): DynamicModule {
    checkOptions('ForgeCacheModule', options, MODULE_OPTION_RULES);
    return withCache(super.forRoot(options));
  }

  static override forRootAsync(options: ForgeCacheModuleAsyncOptions): DynamicModule {
    assertOneOptionsSource('ForgeCacheModule', options);
    return withCache(super.forRootAsync(options));
  }
}

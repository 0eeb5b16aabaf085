import { Global, Injectable, Logger, Module, type DynamicModule, type InjectionToken, type OptionalFactoryDependency, type Provider, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { ForgeBus } from '../../bus/index.js';
import { ForgeCache, type ForgeCacheOptions } from '../../cache/index.js';
import { findDecoratedMethods } from '../decorated-methods.js';
import { CACHED, type CachedSpec } from './cached.decorator.js';

const FORGE_CACHE_OPTIONS = Symbol('FORGE_CACHE_OPTIONS');

/** Wraps every @Cached method of every provider with the node's ForgeCache. */
@Injectable()
class CachedMethodsExplorer implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly cache: ForgeCache,
  ) {}

  onModuleInit(): void {
    const cache = this.cache;
    const methods = findDecoratedMethods<CachedSpec<unknown[]>>({ discovery: this.discovery, scanner: this.scanner, reflector: this.reflector }, CACHED);
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

/**
 * `ForgeCacheModule.forRoot(options)`: the node's ForgeCache (needs ForgeBusModule), and @Cached
 * methods wired to it.
 */
export interface ForgeCacheModuleAsyncOptions {
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory: (...args: any[]) => ForgeCacheOptions | Promise<ForgeCacheOptions>;
}

const cacheProvider: Provider = {
  provide: ForgeCache,
  inject: [ForgeBus, FORGE_CACHE_OPTIONS],
  useFactory: (bus: ForgeBus, options: ForgeCacheOptions) => {
    return new ForgeCache(bus, { logger: new Logger('ForgeCache'), ...options });
  },
};

/**
 * `ForgeCacheModule.forRoot(options)`: the node's ForgeCache (needs ForgeBusModule), and @Cached
 * methods wired to it.
 */
@Global()
@Module({})
export class ForgeCacheModule {
  static forRoot(options: ForgeCacheOptions = {}): DynamicModule {
    return ForgeCacheModule.build({ provide: FORGE_CACHE_OPTIONS, useValue: options });
  }

  static forRootAsync(options: ForgeCacheModuleAsyncOptions): DynamicModule {
    return ForgeCacheModule.build({ provide: FORGE_CACHE_OPTIONS, inject: options.inject ?? [], useFactory: options.useFactory });
  }

  private static build(optionsProvider: Provider): DynamicModule {
    return {
      module: ForgeCacheModule,
      imports: [DiscoveryModule],
      providers: [optionsProvider, cacheProvider, CachedMethodsExplorer],
      exports: [ForgeCache],
    };
  }
}

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Inject, Injectable, Module, Optional, type DynamicModule, type INestApplicationContext, type InjectionToken } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ForgeBus, ForgeBusConfigError, silentLogger } from '../../src/bus/index.js';
import { ForgeCache } from '../../src/cache/index.js';
import { RepoWriteQueue } from '../../src/repo-writes/index.js';
import { SseHub } from '../../src/sse/index.js';
import {
  FORGE_BUS_OPTIONS,
  FORGE_CACHE_OPTIONS,
  ForgeBusModule,
  ForgeCacheModule,
  REPO_WRITES_OPTIONS,
  RepoWritesModule,
  SSE_OPTIONS,
  SseModule,
  type ForgeBusModuleOptions,
  type ForgeBusOptionsFactory,
  type ForgeCacheModuleOptions,
  type ForgeCacheOptionsFactory,
  type ForgeModuleExtras,
  type RepoWritesModuleOptions,
  type RepoWritesOptionsFactory,
  type SseModuleOptions,
  type SseOptionsFactory,
} from '../../src/nest/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

// Every forgebus module is built by ConfigurableModuleBuilder: the same behaviours, checked for each.

let nats: TestNats;

/** What the application's own configuration module would hold. */
interface Settings {
  servers: string;
  tag: string;
}
const SETTINGS = Symbol('SETTINGS');

/** Builds each module's options from the settings: the options show which path built them. */
const optionsFrom = {
  bus: (s: Settings): ForgeBusModuleOptions => ({ nodeId: `bus-${s.tag}`, connection: { servers: s.servers }, logger: silentLogger, startFeed: false }),
  cache: (s: Settings): ForgeCacheModuleOptions => ({ maxEntries: s.tag.length + 10, logger: silentLogger }),
  sse: (s: Settings): SseModuleOptions => ({ policy: TestPolicy, heartbeatMs: 60_000 + s.tag.length, logger: silentLogger }),
  writes: (s: Settings): RepoWritesModuleOptions => ({ partitions: 2, workers: false, retryDelayMs: 100 + s.tag.length, logger: silentLogger }),
};

@Injectable()
class TestPolicy {
  canRead = () => true;
  defaultRepos = () => [];
  accessChange = () => undefined;
}

/** The application's options factory, for useClass (instantiated by the module) and useExisting. */
@Injectable()
class AppOptionsFactory implements ForgeBusOptionsFactory, ForgeCacheOptionsFactory, SseOptionsFactory, RepoWritesOptionsFactory {
  calls = 0;
  constructor(@Inject(SETTINGS) private readonly settings: Settings) {}
  createForgeBusOptions() {
    this.calls++;
    return optionsFrom.bus(this.settings);
  }
  async createForgeCacheOptions() {
    this.calls++;
    return optionsFrom.cache(this.settings);
  }
  createSseOptions() {
    this.calls++;
    return optionsFrom.sse(this.settings);
  }
  createRepoWritesOptions() {
    this.calls++;
    return optionsFrom.writes(this.settings);
  }
}

function settingsModule(tag: string): DynamicModule {
  @Module({})
  class SettingsModule {}
  return {
    module: SettingsModule,
    providers: [{ provide: SETTINGS, useFactory: () => ({ servers: nats.url, tag }) }, AppOptionsFactory],
    exports: [SETTINGS, AppOptionsFactory],
  };
}

interface ModuleCase {
  name: string;
  optionsToken: InjectionToken;
  service: InjectionToken;
  options: (s: Settings) => object;
  forRoot: (options: any) => DynamicModule;
  forRootAsync: (options: any) => DynamicModule;
  /** Asserts the service was built from `expected` (not just that the options token holds it). */
  builtFrom: (service: any, expected: any) => void;
}

const cases: ModuleCase[] = [
  {
    name: 'ForgeBusModule',
    optionsToken: FORGE_BUS_OPTIONS,
    service: ForgeBus,
    options: optionsFrom.bus,
    forRoot: (o) => ForgeBusModule.forRoot(o),
    forRootAsync: (o) => ForgeBusModule.forRootAsync(o),
    builtFrom: (bus: ForgeBus, expected: ForgeBusModuleOptions) => assert.equal(bus.nodeId, expected.nodeId),
  },
  {
    name: 'ForgeCacheModule',
    optionsToken: FORGE_CACHE_OPTIONS,
    service: ForgeCache,
    options: optionsFrom.cache,
    forRoot: (o) => ForgeCacheModule.forRoot(o),
    forRootAsync: (o) => ForgeCacheModule.forRootAsync(o),
    builtFrom: (cache: ForgeCache, expected: ForgeCacheModuleOptions) =>
      assert.equal((cache.entries as unknown as { lru: { max: number } }).lru.max, expected.maxEntries),
  },
  {
    name: 'SseModule',
    optionsToken: SSE_OPTIONS,
    service: SseHub,
    options: optionsFrom.sse,
    forRoot: (o) => SseModule.forRoot(o),
    forRootAsync: (o) => SseModule.forRootAsync(o),
    builtFrom: (hub: SseHub, expected: SseModuleOptions) => assert.equal((hub as unknown as { options: { heartbeatMs: number } }).options.heartbeatMs, expected.heartbeatMs),
  },
  {
    name: 'RepoWritesModule',
    optionsToken: REPO_WRITES_OPTIONS,
    service: RepoWriteQueue,
    options: optionsFrom.writes,
    forRoot: (o) => RepoWritesModule.forRoot(o),
    forRootAsync: (o) => RepoWritesModule.forRootAsync(o),
    builtFrom: (queue: RepoWriteQueue, expected: RepoWritesModuleOptions) => assert.equal(queue.partitions, expected.partitions),
  },
];

/** A module that does not import the module under test: it sees its service only if it is global. */
function featureModule(service: InjectionToken) {
  @Injectable()
  class FeatureConsumer {
    constructor(@Optional() @Inject(service) readonly service?: unknown) {}
  }
  @Module({ providers: [FeatureConsumer] })
  class FeatureModule {}
  return { FeatureModule, FeatureConsumer };
}

/** Boots `moduleUnderTest` (with a ForgeBusModule when it needs one) next to a feature module. */
async function boot(c: ModuleCase, moduleUnderTest: DynamicModule) {
  const imports = c.service === ForgeBus ? [moduleUnderTest] : [ForgeBusModule.forRoot(optionsFrom.bus({ servers: nats.url, tag: 'base' })), moduleUnderTest];
  const { FeatureModule, FeatureConsumer } = featureModule(c.service);
  @Injectable()
  class RootConsumer {
    constructor(@Inject(c.service) readonly service: unknown) {}
  }
  @Module({ imports: [...imports, FeatureModule], providers: [RootConsumer, TestPolicy] })
  class AppModule {}
  const app: INestApplicationContext = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
  return {
    app,
    service: app.get(RootConsumer).service,
    options: app.get(c.optionsToken),
    seenByFeature: app.get(FeatureConsumer).service,
  };
}

async function withApp(c: ModuleCase, moduleUnderTest: DynamicModule, check: (booted: Awaited<ReturnType<typeof boot>>) => void | Promise<void>) {
  const booted = await boot(c, moduleUnderTest);
  try {
    await check(booted);
  } finally {
    await booted.app.close();
  }
}

describe('forgebus modules: ConfigurableModuleBuilder conventions', () => {
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    await nats?.dispose();
  });

  for (const c of cases) {
    describe(c.name, () => {
      it('forRoot(options): the service is built from the options, which are injectable without isGlobal', async () => {
        const expected = c.options({ servers: nats.url, tag: 'root' });
        await withApp(c, c.forRoot({ ...expected, isGlobal: true }), ({ service, options }) => {
          assert.deepEqual(options, expected);
          assert.equal('isGlobal' in (options as object), false);
          c.builtFrom(service, expected);
        });
      });

      it('forRootAsync({ imports, inject, useFactory })', async () => {
        let factoryCalls = 0;
        const module = c.forRootAsync({
          imports: [settingsModule('factory')],
          inject: [SETTINGS],
          useFactory: async (settings: Settings) => {
            factoryCalls++;
            return c.options(settings);
          },
        });
        await withApp(c, module, ({ service, options }) => {
          const expected = c.options({ servers: nats.url, tag: 'factory' });
          assert.equal(factoryCalls, 1);
          assert.deepEqual(options, expected);
          c.builtFrom(service, expected);
        });
      });

      it('forRootAsync({ imports, useClass }): the module instantiates the factory class with its dependencies', async () => {
        await withApp(c, c.forRootAsync({ imports: [settingsModule('useClass')], useClass: AppOptionsFactory }), ({ service, options }) => {
          const expected = c.options({ servers: nats.url, tag: 'useClass' });
          assert.deepEqual(options, expected);
          c.builtFrom(service, expected);
        });
      });

      it('forRootAsync({ imports, useExisting }): the application\'s own factory instance is asked', async () => {
        const settings = settingsModule('useExisting');
        await withApp(c, c.forRootAsync({ imports: [settings], useExisting: AppOptionsFactory }), ({ app, service, options }) => {
          const expected = c.options({ servers: nats.url, tag: 'useExisting' });
          assert.deepEqual(options, expected);
          c.builtFrom(service, expected);
          const existing = app.select(settings).get(AppOptionsFactory, { strict: true });
          assert.equal(existing.calls, 1, 'the exported instance made the options');
        });
      });

      const visibility: { label: string; extras: ForgeModuleExtras; async: boolean; global: boolean }[] = [
        { label: 'forRoot, isGlobal by default', extras: {}, async: false, global: true },
        { label: 'forRoot({ isGlobal: true })', extras: { isGlobal: true }, async: false, global: true },
        { label: 'forRoot({ isGlobal: false })', extras: { isGlobal: false }, async: false, global: false },
        { label: 'forRootAsync, isGlobal by default', extras: {}, async: true, global: true },
        { label: 'forRootAsync({ isGlobal: false })', extras: { isGlobal: false }, async: true, global: false },
      ];
      for (const v of visibility) {
        it(`${v.label}: ${v.global ? 'every module sees' : 'only the importing module sees'} the service`, async () => {
          const options = c.options({ servers: nats.url, tag: 'global' });
          const module = v.async ? c.forRootAsync({ ...v.extras, useFactory: () => options }) : c.forRoot({ ...options, ...v.extras });
          assert.equal(module.global, v.global);
          await withApp(c, module, ({ service, seenByFeature }) => {
            assert.ok(service, 'the importing module gets the service');
            assert.equal(seenByFeature, v.global ? service : undefined);
          });
        });
      }

      it('forRootAsync without exactly one options source fails at the call, naming the module', () => {
        for (const bad of [{}, { useFactory: () => ({}), useClass: AppOptionsFactory }]) {
          assert.throws(
            () => c.forRootAsync(bad),
            (err: unknown) =>
              err instanceof ForgeBusConfigError && err.code === 'CONFIG' && err.message.includes(`${c.name}.forRootAsync needs exactly one of useFactory, useClass or useExisting`),
          );
        }
      });
    });
  }
});

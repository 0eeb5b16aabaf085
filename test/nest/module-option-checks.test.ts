import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Global, Injectable, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ForgeBus, InvalidOptionError, silentLogger } from '../../src/bus/index.js';
import { ForgeBusModule, ForgeCacheModule, RepoWritesModule, SseModule } from '../../src/nest/index.js';
import { startTestNats, type TestNats } from '../support/nats.js';

@Injectable()
class Policy {
  canRead = async () => true;
  defaultRepos = async () => [];
  accessChange = () => undefined;
}

// The modules' own options, and the options they hand to the constructors, are checked: at the
// forRoot call when they are given there, at start-up when a factory makes them. A typo fails the
// application with the option's name, not later in production.
describe('Nest modules check their options', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'checks', connection: { servers: nats.url }, logger: silentLogger });
  });
  after(async () => {
    await bus?.close();
    await nats?.dispose();
  });

  function thrown(make: () => unknown): InvalidOptionError {
    try {
      make();
    } catch (err) {
      assert.ok(err instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(err)}`);
      return err;
    }
    assert.fail('the options were accepted');
  }

  /** Starts an application whose ForgeBus is the test's own (so a failed start leaves no connection behind). */
  async function startupError(module: DynamicModule): Promise<InvalidOptionError> {
    @Global()
    @Module({ providers: [{ provide: ForgeBus, useValue: bus }, Policy], exports: [ForgeBus, Policy] })
    class TestBusModule {}
    @Module({ imports: [TestBusModule, module] })
    class App {}
    try {
      const app = await NestFactory.createApplicationContext(App, { logger: false, abortOnError: false });
      await app.close();
    } catch (err) {
      assert.ok(err instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(err)}`);
      return err;
    }
    assert.fail('the application started');
  }

  it('ForgeBusModule: its own startFeed and isGlobal, and every ForgeBus.connect option', async () => {
    let err = thrown(() => ForgeBusModule.forRoot({ nodeId: 'checks', startFeed: 'no' as unknown as boolean }));
    assert.deepEqual([err.owner, err.option, err.code], ['ForgeBusModule', 'startFeed', 'INVALID_OPTION']);
    err = thrown(() => ForgeBusModule.forRoot({ nodeId: 'checks', isGlobal: 'yes' as unknown as boolean }));
    assert.deepEqual([err.owner, err.option], ['ForgeBusModule', 'isGlobal']);
    err = thrown(() => ForgeBusModule.forRoot({ nodeId: 'checks', publisher: { maxInflight: 1 } as never }));
    assert.deepEqual([err.owner, err.option, err.code], ['ForgeBusModule', 'publisher.maxInflight', 'UNKNOWN_OPTION']);
    // From a factory: checked when the application starts, before anything connects.
    @Module({ imports: [ForgeBusModule.forRootAsync({ useFactory: () => ({ nodeId: 'checks', publisher: { maxInFlight: 0 } }) })] })
    class App {}
    await assert.rejects(NestFactory.createApplicationContext(App, { logger: false, abortOnError: false }), (e: unknown) => {
      assert.ok(e instanceof InvalidOptionError);
      assert.deepEqual([e.owner, e.option], ['ForgeBusModule', 'publisher.maxInFlight']);
      return true;
    });
  });

  it('ForgeCacheModule: a misspelt option is refused, in forRoot and from a factory', async () => {
    let err = thrown(() => ForgeCacheModule.forRoot({ maxEntrie: 10 } as never));
    assert.deepEqual([err.owner, err.option, err.code], ['ForgeCacheModule', 'maxEntrie', 'UNKNOWN_OPTION']);
    err = await startupError(ForgeCacheModule.forRootAsync({ useFactory: () => ({ disconnectedReads: 'never' as 'bypass' }) }));
    assert.deepEqual([err.owner, err.option], ['ForgeCacheModule', 'disconnectedReads']);
  });

  it('RepoWritesModule: workers must be a boolean, partitions in range', async () => {
    let err = thrown(() => RepoWritesModule.forRoot({ workers: 1 as unknown as boolean }));
    assert.deepEqual([err.owner, err.option], ['RepoWritesModule', 'workers']);
    err = thrown(() => RepoWritesModule.forRoot({ partitions: 0, workers: false }));
    assert.deepEqual([err.owner, err.option], ['RepoWritesModule', 'partitions']);
    err = await startupError(RepoWritesModule.forRootAsync({ useFactory: () => ({ partitions: 2048, workers: false }) }));
    assert.deepEqual([err.owner, err.option], ['RepoWritesModule', 'partitions']);
  });

  it('SseModule: the policy is required and must be an injection token; hub options in range', async () => {
    let err = thrown(() => SseModule.forRoot({} as never));
    assert.deepEqual([err.owner, err.option], ['SseModule', 'policy']);
    err = thrown(() => SseModule.forRoot({ policy: 42 as never }));
    assert.deepEqual([err.owner, err.option], ['SseModule', 'policy']);
    err = thrown(() => SseModule.forRoot({ policy: Policy, heartbeatMs: -5 }));
    assert.deepEqual([err.owner, err.option], ['SseModule', 'heartbeatMs']);
    err = await startupError(SseModule.forRootAsync({ useFactory: () => ({ policy: Policy, maxClients: 0 }) }));
    assert.deepEqual([err.owner, err.option], ['SseModule', 'maxClients']);
  });
});

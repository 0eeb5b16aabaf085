import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ForgeBus, silentLogger, type DeliveredEvent } from '../../src/bus/index.js';
import { CacheTags } from '../../src/cache/index.js';
import { RepoWriteQueue, type RepoWriteContext } from '../../src/repo-writes/index.js';
import { Cached, ForgeBusModule, ForgeCacheModule, OnForgeEvent, RepoWriteHandler, RepoWritesModule } from '../../src/nest/index.js';
import { CachedMark } from '../../src/nest/cache/cached.decorator.js';
import { ForgeEventHandlerMark } from '../../src/nest/on-forge-event.decorator.js';
import { RepoWriteHandlerMark } from '../../src/nest/repo-writes/repo-write-handler.decorator.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const repo = { owner: 'acme', name: 'web' };

@Injectable()
class RepoService {
  readonly issues: number[] = [];
  loads = 0;

  @OnForgeEvent('issue.created', { repo })
  onIssueCreated(event: DeliveredEvent<{ number: number }>): void {
    this.issues.push(event.envelope.payload.number);
  }

  @Cached({ key: (owner: string, name: string) => `repo:${owner}/${name}`, tags: (owner: string, name: string) => [CacheTags.repo({ owner, name })] })
  async describeRepo(owner: string, name: string): Promise<string> {
    this.loads++;
    return `${owner}/${name} #${this.loads}`;
  }

  @RepoWriteHandler('rename')
  async rename(ctx: RepoWriteContext<{ to: string }>): Promise<string> {
    return `${ctx.repo.owner}/${ctx.repo.name} -> ${ctx.args.to}`;
  }

  notDecorated(): string {
    return 'plain';
  }
}

@Controller()
class HooksController {
  readonly deleted: number[] = [];

  @OnForgeEvent(['repo.deleted'])
  onRepoDeleted(event: DeliveredEvent): void {
    this.deleted.push(event.seq);
  }
}

describe('decorators made with DiscoveryService.createDecorator', () => {
  let nats: TestNats;
  let app: INestApplicationContext;

  before(async () => {
    nats = await startTestNats();
    @Module({
      imports: [
        ForgeBusModule.forRoot({ nodeId: 'decorators', connection: { servers: nats.url }, logger: silentLogger }),
        ForgeCacheModule.forRoot({ logger: silentLogger }),
        RepoWritesModule.forRoot({ partitions: 2, logger: silentLogger }),
      ],
      controllers: [HooksController],
      providers: [RepoService],
    })
    class AppModule {}
    app = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
  });

  after(async () => {
    await app?.close();
    await nats?.dispose();
  });

  it('keep their metadata on the method itself, under the discoverable key', () => {
    const proto = RepoService.prototype as unknown as Record<string, object>;
    assert.deepEqual(Reflect.getMetadata(ForgeEventHandlerMark.KEY, proto.onIssueCreated!), { patterns: ['issue.created'], filter: { repo } });
    assert.deepEqual(Reflect.getMetadata(RepoWriteHandlerMark.KEY, proto.rename!), { operation: 'rename' });
    assert.equal(typeof Reflect.getMetadata(CachedMark.KEY, proto.describeRepo!)?.key, 'function');
    assert.equal(Reflect.getMetadata(ForgeEventHandlerMark.KEY, proto.notDecorated!), undefined);
  });

  it('@OnForgeEvent methods of providers and controllers receive their events', async () => {
    const bus = app.get(ForgeBus);
    const service = app.get(RepoService);
    const controller = app.get(HooksController);
    await bus.publish({ type: 'issue.created', repo: { owner: 'other', name: 'web' }, payload: { number: 1, title: 'elsewhere' } });
    await bus.publish({ type: 'issue.created', repo, payload: { number: 2, title: 'here' } });
    const deleted = await bus.publish({ type: 'repo.deleted', repo: { owner: 'acme', name: 'old' }, payload: {} });
    await eventually(() => service.issues.length === 1 && controller.deleted.length === 1, 10_000, '@OnForgeEvent handlers');
    assert.deepEqual(service.issues, [2], 'the filter of the decorator applies');
    assert.deepEqual(controller.deleted, [deleted.seq]);
  });

  it('@Cached methods are served from the ForgeCache until an event invalidates their tags', async () => {
    const bus = app.get(ForgeBus);
    const service = app.get(RepoService);
    const first = await service.describeRepo('acme', 'cached');
    assert.equal(await service.describeRepo('acme', 'cached'), first);
    assert.equal(service.loads, 1);
    await bus.publish({ type: 'repo.deleted', repo: { owner: 'acme', name: 'cached' }, payload: {} });
    await eventually(async () => (await service.describeRepo('acme', 'cached')) !== first, 10_000, 'invalidation of the cached read');
    assert.equal(service.loads, 2);
  });

  it('@RepoWriteHandler methods apply the writes submitted to the queue', async () => {
    const queue = app.get(RepoWriteQueue);
    assert.equal(await queue.submit(repo, 'rename', { to: 'www' }, { timeoutMs: 20_000 }), 'acme/web -> www');
  });
});

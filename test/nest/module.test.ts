import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { firstValueFrom } from 'rxjs';
import { ForgeBus, silentLogger, type DeliveredEvent } from '../../src/bus/index.js';
import { ForgeBusClient, ForgeBusHealthIndicator, ForgeBusModule, OnForgeEvent } from '../../src/nest/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

@Injectable()
class IssueWatcher {
  readonly seen: DeliveredEvent[] = [];
  readonly aliceOnly: DeliveredEvent[] = [];

  @OnForgeEvent(['issue.*'])
  onIssue(event: DeliveredEvent): void {
    this.seen.push(event);
  }

  @OnForgeEvent('*', { repo: { owner: 'alice', name: 'web' } })
  async onAliceWeb(event: DeliveredEvent): Promise<void> {
    await new Promise((r) => setTimeout(r, 1));
    this.aliceOnly.push(event);
  }
}

const OPTIONS = Symbol('OPTIONS');

describe('NestJS face', () => {
  let nats: TestNats;
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    await nats?.dispose();
  });

  it('forRootAsync: injects ForgeBus, runs @OnForgeEvent handlers in order, drains on close', async () => {
    @Module({ providers: [{ provide: OPTIONS, useValue: { servers: nats.url } }], exports: [OPTIONS] })
    class OptionsModule {}

    @Module({
      imports: [
        ForgeBusModule.forRootAsync({
          imports: [OptionsModule],
          inject: [OPTIONS],
          useFactory: (o: { servers: string }) => ({ nodeId: 'nest-a', connection: { servers: o.servers }, logger: silentLogger }),
        }),
      ],
      providers: [IssueWatcher],
    })
    class AppModule {}

    const app: INestApplicationContext = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const bus = app.get(ForgeBus);
    const watcher = app.get(IssueWatcher);
    try {
      assert.equal(bus.feed.running, true);
      const published = [];
      for (let i = 1; i <= 20; i++) {
        published.push(await bus.publish({ type: 'issue.created', repo: { owner: i % 2 ? 'alice' : 'bob', name: 'web' }, payload: { number: i, title: `t${i}` } }));
      }
      await bus.publish({ type: 'repo.deleted', repo: { owner: 'alice', name: 'web' }, payload: {} });
      await eventually(() => watcher.seen.length === 20 && watcher.aliceOnly.length === 11, 3_000, 'handlers').catch((e) => { console.log(watcher.seen.length, watcher.aliceOnly.length, bus.feed.stats); throw e; });
      assert.deepEqual(watcher.seen.map((e) => e.seq), published.map((p) => p.seq));
      assert.ok(watcher.aliceOnly.every((e) => e.envelope.repo?.owner === 'alice'));
      assert.equal(watcher.aliceOnly.at(-1)!.envelope.type, 'repo.deleted');
      const health = app.get(ForgeBusHealthIndicator).isHealthy('bus');
      assert.equal(health.bus.status, 'up');
    } finally {
      await app.close();
    }
    assert.equal(bus.nc.isClosed(), true, 'connection closed at shutdown');
  });

  describe('microservice transport between processes', () => {
    const children: ChildProcess[] = [];
    const lines: Record<string, unknown>[][] = [[], []];
    let client: ForgeBusClient;

    before(async () => {
      const fixture = fileURLToPath(new URL('../fixtures/nest-microservice.js', import.meta.url));
      await Promise.all(
        [0, 1].map(
          (i) =>
            new Promise<void>((resolve, reject) => {
              const child = spawn(process.execPath, [fixture], {
                env: { ...process.env, NODE_ID: `svc-${i}`, NATS_URL: nats.url },
                stdio: ['ignore', 'pipe', 'inherit'],
              });
              children.push(child);
              child.once('exit', (code) => reject(new Error(`microservice ${i} exited with ${code}`)));
              createInterface({ input: child.stdout! }).on('line', (line) => {
                const msg = JSON.parse(line) as Record<string, unknown>;
                if (msg.kind === 'ready') resolve();
                else lines[i]!.push(msg);
              });
            }),
        ),
      );
      client = new ForgeBusClient({ nodeId: 'client', connection: { servers: nats.url }, logger: silentLogger, requestTimeoutMs: 3_000 });
      await client.connect();
    });

    after(async () => {
      await client?.close();
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              c.removeAllListeners('exit');
              if (c.exitCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGTERM');
            }),
        ),
      );
    });

    it('delivers emit() to @EventPattern handlers in every process, in order, once each', async () => {
      const sent = [];
      for (let n = 1; n <= 30; n++) {
        sent.push(await firstValueFrom(client.emit('issue.deleted', { repo: { owner: 'acme', name: 'web' }, payload: { number: n } })));
      }
      await firstValueFrom(client.emit('repo.renamed', { repo: { owner: 'acme', name: 'web' }, payload: { oldName: 'web', newName: 'www' } }));
      for (const got of lines) {
        await eventually(() => got.length === 31, 10_000, 'events in the microservice');
        assert.deepEqual(got.slice(0, 30).map((l) => (l.payload as { number: number }).number), sent.map((_, i) => i + 1));
        assert.deepEqual(got.slice(0, 30).map((l) => l.seq), sent.map((s) => (s as { seq: number }).seq));
        assert.equal(got[30]!.type, 'repo.renamed');
      }
    });

    it('refuses to emit an invalid event, naming the field', async () => {
      await assert.rejects(
        firstValueFrom(client.emit('issue.deleted', { repo: { owner: 'acme', name: 'web' }, payload: { number: 'one' } })),
        /payload\.number/,
      );
    });

    it('answers send() through one @MessagePattern handler of the cluster', async () => {
      assert.equal(await firstValueFrom(client.send<number>('sum', [1, 2, 3, 4])), 10);
      const answers = new Set<string>();
      for (let i = 0; i < 20; i++) answers.add(await firstValueFrom(client.send<string>('whoami', {})));
      assert.ok([...answers].every((a) => a === 'svc-0' || a === 'svc-1'));
      await assert.rejects(firstValueFrom(client.send('nobody-handles-this', {})), /no forgebus node handles/);
    });
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { silentLogger } from '../../src/bus/index.js';
import { CronScheduler, Membership, NodeControl, type CronContext } from '../../src/cluster/index.js';
import { ClusterCron, ClusterModule, ForgeBusModule } from '../../src/nest/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

@Injectable()
class Maintenance {
  readonly ticks: Date[] = [];

  @ClusterCron('* * * * * *', 'nest-heartbeat')
  beat({ tick }: CronContext): void {
    this.ticks.push(tick);
  }
}

describe('ClusterModule', () => {
  let nats: TestNats;
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    await nats?.dispose();
  });

  it('joins the cluster, answers control requests and runs @ClusterCron methods once per tick; leaves on close', async () => {
    @Module({
      imports: [
        ForgeBusModule.forRoot({ nodeId: 'nest-cluster', connection: { servers: nats.url }, logger: silentLogger }),
        ClusterModule.forRootAsync({ useFactory: () => ({ ttlMs: 3_000, roles: ['test'], logger: silentLogger }) }),
      ],
      providers: [Maintenance],
    })
    class App {}
    const app = await NestFactory.createApplicationContext(App, { logger: false });
    try {
      const membership = app.get(Membership);
      assert.deepEqual(membership.members().map((m) => [m.id, m.roles]), [['nest-cluster', ['test']]]);
      assert.equal((await app.get(NodeControl).request<{ nodeId: string }>('nest-cluster', 'ping')).nodeId, 'nest-cluster');
      const maintenance = app.get(Maintenance);
      await eventually(() => maintenance.ticks.length >= 2, 10_000, 'two ticks of the decorated job');
      const runs = await app.get(CronScheduler).runs('nest-heartbeat');
      assert.ok(runs.length >= 2 && runs.every((r) => r.node === 'nest-cluster'));
      assert.equal(new Set(maintenance.ticks.map((t) => t.getTime())).size, maintenance.ticks.length, 'each tick once');
    } finally {
      await app.close();
    }
  });
});

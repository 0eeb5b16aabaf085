import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { CronScheduler, Locks, type CronJobOptions } from '../../src/cluster/index.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

describe('cluster cron policies', () => {
  let nats: TestNats;
  const buses: ForgeBus[] = [];
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    for (const bus of buses) await bus.close();
    await nats?.dispose();
  });

  async function scheduler(nodeId: string, job: string, fn: () => unknown, options: CronJobOptions = {}): Promise<CronScheduler> {
    const bus = await ForgeBus.connect({ nodeId, connection: { servers: nats.url }, logger: silentLogger });
    buses.push(bus);
    const cron = new CronScheduler(bus, new Locks(bus, { logger: silentLogger }), { logger: silentLogger });
    cron.schedule(job, '* * * * * *', fn, options);
    await cron.start();
    return cron;
  }

  it('a schedule whose next tick is weeks away waits for it (timers cap at 24.8 days)', async () => {
    const bus = await ForgeBus.connect({ nodeId: 'far-a', connection: { servers: nats.url }, logger: silentLogger });
    buses.push(bus);
    const cron = new CronScheduler(bus, new Locks(bus, { logger: silentLogger }), { logger: silentLogger });
    let ran = 0;
    // The first second of the month after next: at least 31 days away, beyond setTimeout's range.
    const month = ((new Date().getMonth() + 2) % 12) + 1;
    cron.schedule('yearly', `0 0 0 1 ${month} *`, () => ran++);
    await cron.start();
    await new Promise((r) => setTimeout(r, 1_500));
    await cron.stop();
    assert.equal(ran, 0, `nothing runs before the 1st of month ${month}`);
    assert.deepEqual(await cron.runs('yearly'), [], 'no tick claimed or recorded');
  });

  it('overlap "skip": while a run lasts longer than the interval, the ticks in between are recorded skipped, never run beside it', async () => {
    let running = 0;
    let concurrent = 0;
    const slow = async () => {
      running++;
      concurrent = Math.max(concurrent, running);
      await new Promise((r) => setTimeout(r, 2_500)); // the job's own duration: longer than its interval
      running--;
    };
    const a = await scheduler('ov-a', 'slow-job', slow, { leaseMs: 5_000 });
    const b = await scheduler('ov-b', 'slow-job', slow, { leaseMs: 5_000 });
    await eventually(async () => (await a.runs('slow-job')).filter((r) => r.outcome === 'succeeded').length >= 2, 20_000, 'two finished runs');
    await a.stop();
    await b.stop();
    const runs = await a.runs('slow-job');
    assert.equal(concurrent, 1, 'never two runs at once, across both nodes');
    assert.ok(runs.some((r) => r.outcome === 'skipped' && /still runs/.test(r.error ?? '')), 'ticks during a run were skipped and say why');
    assert.equal(new Set(runs.map((r) => r.tick)).size, runs.length, 'each tick recorded once');
  });

  it('missed "once" runs the latest tick missed while the whole cluster was down; "all" runs each, bounded by maxMissed', async () => {
    const ran: string[] = [];
    const first = await scheduler('ms-a', 'catch-up', () => ran.push('live'));
    await eventually(() => ran.length >= 1, 10_000, 'a first run');
    await first.stop();
    const lastTick = Date.parse((await first.runs('catch-up', 1))[0]!.tick);
    // The cluster is down for a few ticks.
    await eventually(() => Date.now() > lastTick + 4_500, 10_000, 'four ticks to pass');
    // start() runs the catch-up before it arms the live ticks: ticks before it returned were missed.
    const once = await scheduler('ms-b', 'catch-up', () => undefined, { missed: 'once' });
    const missedUntil = Date.now();
    const afterOnce = await once.runs('catch-up');
    await once.stop();
    const catchUps = afterOnce.filter((r) => Date.parse(r.tick) > lastTick && Date.parse(r.tick) < missedUntil);
    assert.equal(catchUps.length, 1, `exactly one missed tick run (${JSON.stringify(afterOnce.slice(0, 5).map((r) => r.tick))})`);
    assert.ok(Date.parse(catchUps[0]!.tick) > missedUntil - 1_000, 'the latest one');

    const lastBefore = Date.parse((await once.runs('catch-up', 1))[0]!.tick);
    await eventually(() => Date.now() > lastBefore + 5_500, 10_000, 'five ticks to pass');
    const all = await scheduler('ms-c', 'catch-up', () => undefined, { missed: 'all', maxMissed: 3 });
    const missedUntilAll = Date.now();
    const runs = await all.runs('catch-up');
    await all.stop();
    const late = runs.filter((r) => Date.parse(r.tick) > lastBefore && Date.parse(r.tick) < missedUntilAll);
    assert.equal(late.length, 3, 'three missed ticks run (maxMissed), not five');
  });
});

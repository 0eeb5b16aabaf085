import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, SettingsDriftError, silentLogger } from '../../src/bus/index.js';
import { Membership, type MembershipChange } from '../../src/cluster/index.js';
import { startClusterMember } from '../support/cluster-member.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const TTL_MS = 2_000;
const startMember = (natsUrl: string, id: string) => startClusterMember(natsUrl, id, TTL_MS);

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

describe('cluster membership', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  let membership: Membership;
  const changes: MembershipChange[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'observer', connection: { servers: nats.url }, logger: silentLogger });
    membership = new Membership(bus, { ttlMs: TTL_MS, roles: ['web'], address: 'http://127.0.0.1:3001', counters: () => ({ sseStreams: 7 }), logger: silentLogger });
    membership.onChange((c) => changes.push(c));
    await membership.start();
  });

  after(async () => {
    for (const child of children) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await membership?.stop();
    await bus?.close();
    await nats?.dispose();
  });

  it('lists the live members with their records; a clean stop leaves at once, a killed process within the TTL', async () => {
    children.push(await startMember(nats.url, 'm-1'), await startMember(nats.url, 'm-2'));
    await eventually(() => membership.members().length === 3, 10_000, 'three members');
    const self = membership.members().find((m) => m.id === 'observer')!;
    assert.deepEqual([self.address, self.roles, self.counters, self.pid], ['http://127.0.0.1:3001', ['web'], { sseStreams: 7 }, process.pid]);
    assert.deepEqual(membership.members().find((m) => m.id === 'm-1')!.roles, ['fixture']);
    assert.deepEqual(changes.filter((c) => c.type === 'joined').map((c) => (c as { member: { id: string } }).member.id).sort(), ['m-1', 'm-2', 'observer']);

    // A clean shutdown deletes the key: gone well before the TTL.
    const cleanAt = performance.now();
    children[0]!.kill('SIGTERM');
    await eventually(() => !membership.isMember('m-1'), TTL_MS, 'm-1 to leave at once');
    assert.ok(performance.now() - cleanAt < TTL_MS, 'before its record could expire');
    assert.deepEqual(changes.at(-1), { type: 'left', id: 'm-1', reason: 'shutdown' });

    // A killed process stops refreshing: no watch event on 2.9, found by its silence within TTL + a refresh.
    const killedAt = performance.now();
    children[1]!.kill('SIGKILL');
    await eventually(() => !membership.isMember('m-2'), TTL_MS * 3, 'm-2 to be found gone');
    const after = performance.now() - killedAt;
    assert.ok(after >= TTL_MS * 0.5, `not declared gone before its record could have expired (${Math.round(after)} ms)`);
    assert.deepEqual(changes.at(-1), { type: 'left', id: 'm-2', reason: 'expired' });
    assert.deepEqual(membership.members().map((m) => m.id), ['observer']);
  });

  it('a process with another TTL is refused (the TTL is a cluster-wide setting)', async () => {
    const other = await ForgeBus.connect({ nodeId: 'other-ttl', connection: { servers: nats.url }, logger: silentLogger });
    try {
      await assert.rejects(new Membership(other, { ttlMs: 5_000, logger: silentLogger }).start(), (err: unknown) => err instanceof SettingsDriftError && err.setting === 'cluster.nodeTtlMs');
    } finally {
      await other.close();
    }
  });
});

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ForgeBus, silentLogger } from '../../src/bus/index.js';
import { Membership, NodeControl, NodeControlError, NodeControlTimeoutError, UnknownNodeError } from '../../src/cluster/index.js';
import { startClusterMember } from '../support/cluster-member.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';

const TTL_MS = 3_000;
const startMember = (natsUrl: string, id: string) => startClusterMember(natsUrl, id, TTL_MS);

// Control messages to one node or all of them, between real processes.
describe('node control', () => {
  let nats: TestNats;
  let bus: ForgeBus;
  let membership: Membership;
  let control: NodeControl;
  const children: ChildProcess[] = [];

  before(async () => {
    nats = await startTestNats();
    bus = await ForgeBus.connect({ nodeId: 'ctl-observer', connection: { servers: nats.url }, logger: silentLogger });
    membership = new Membership(bus, { ttlMs: TTL_MS, logger: silentLogger });
    await membership.start();
    control = new NodeControl(bus, membership, { timeoutMs: 2_000, logger: silentLogger });
    control.start();
    children.push(await startMember(nats.url, 'ctl-1'), await startMember(nats.url, 'ctl-2'));
    await eventually(() => membership.members().length === 3, 10_000, 'three members');
  });

  after(async () => {
    for (const child of children) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    control?.stop();
    await membership?.stop();
    await bus?.close();
    await nats?.dispose();
  });

  it('asks one node: ping, status, an application verb; clear errors for an unknown node, verb or a failing handler', async () => {
    assert.equal((await control.request<{ nodeId: string }>('ctl-1', 'ping')).nodeId, 'ctl-1');
    const status = await control.request<{ nodeId: string; member: { roles: string[] }; verbs: string[] }>('ctl-2', 'status');
    assert.deepEqual([status.nodeId, status.member.roles, status.verbs], ['ctl-2', ['fixture'], ['echo', 'fail', 'ping', 'status']]);
    assert.deepEqual(await control.request('ctl-1', 'echo', { n: 42 }), { echoed: { n: 42 }, by: 'ctl-1' });

    const started = performance.now();
    await assert.rejects(control.request('ctl-9', 'ping'), (err: unknown) => err instanceof UnknownNodeError && err.code === 'UNKNOWN_NODE' && /ctl-9/.test(err.message));
    assert.ok(performance.now() - started < 1_000, 'an unknown node is known at once (no responders), not after the timeout');
    await assert.rejects(control.request('ctl-1', 'reboot'), (err: unknown) => err instanceof NodeControlError && err.remoteCode === 'UNKNOWN_VERB');
    await assert.rejects(control.request('ctl-2', 'fail'), (err: unknown) => err instanceof NodeControlError && /this verb always fails/.test(err.message));
  });

  it('scatters to every node, done as soon as every live member answered; a frozen node is named missing', async () => {
    const started = performance.now();
    const all = await control.scatter<{ nodeId: string }>('ping', undefined, { timeoutMs: 5_000 });
    assert.deepEqual(all.replies.map((r) => r.nodeId), ['ctl-1', 'ctl-2', 'ctl-observer']);
    assert.deepEqual(all.missing, []);
    assert.ok(performance.now() - started < 2_500, 'it did not wait for the timeout');

    children[1]!.kill('SIGSTOP');
    try {
      const partial = await control.scatter('ping', undefined, { timeoutMs: 800 });
      assert.deepEqual(partial.replies.map((r) => r.nodeId), ['ctl-1', 'ctl-observer']);
      assert.deepEqual(partial.missing, ['ctl-2']);
      await assert.rejects(control.request('ctl-2', 'ping', undefined, { timeoutMs: 500 }), NodeControlTimeoutError);
      const failing = await control.scatter('fail', undefined, { timeoutMs: 800 });
      assert.deepEqual(failing.errors.map((e) => [e.nodeId, e.code]), [['ctl-1', 'HANDLER_FAILED'], ['ctl-observer', 'UNKNOWN_VERB']]);
    } finally {
      children[1]!.kill('SIGCONT');
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connectBus, ForgeBusConfigError } from '../../src/bus/index.js';
import { renderServerConfig, supportsSyncAlways } from '../../src/ops/nats-config.js';
import { natsServerVersion, startNatsServer } from '../../src/ops/nats-server.js';
import { natsClientFromEnv, NatsEnvError } from '../../src/ops/nats-env.js';

const base = { serverName: 's', host: '127.0.0.1', port: 4222, monitorPort: -1, storeDir: '/tmp/x' };

describe('generated nats-server configurations and the NATS client settings', () => {
  it('asks for fsync on every write exactly where the server has sync_interval (2.10+)', () => {
    assert.equal(supportsSyncAlways([2, 9]), false);
    assert.equal(supportsSyncAlways([2, 10]), true);
    assert.equal(supportsSyncAlways(undefined), false);
    assert.equal(JSON.parse(renderServerConfig({ ...base, version: [2, 10] })).jetstream.sync_interval, 'always');
    assert.equal(JSON.parse(renderServerConfig({ ...base, version: [2, 9] })).jetstream.sync_interval, undefined);
    // The installed server starts with what is generated for it (2.9.10 would refuse the field).
    assert.deepEqual(natsServerVersion()?.slice(0, 1), [2]);
  });

  it('reads credentials and TLS files from the environment, one way only', () => {
    assert.deepEqual(natsClientFromEnv({ NATS_URL: 'nats://a:4222,nats://b:4222', NATS_USER: 'u', NATS_PASSWORD: 'p' }), { servers: 'nats://a:4222,nats://b:4222', user: 'u', pass: 'p' });
    assert.deepEqual(natsClientFromEnv({ NATS_TOKEN: 't' }), { servers: 'nats://127.0.0.1:4222', token: 't' });
    assert.deepEqual(natsClientFromEnv({ NATS_CREDS: '/etc/forge.creds', NATS_TLS_CA: '/ca.pem' }), { servers: 'nats://127.0.0.1:4222', credsFile: '/etc/forge.creds', tls: { caFile: '/ca.pem' } });
    assert.throws(() => natsClientFromEnv({ NATS_USER: 'u', NATS_TOKEN: 't' }), (err: unknown) => err instanceof NatsEnvError && /more than one way/.test(err.message));
    assert.throws(() => natsClientFromEnv({ NATS_PASSWORD: 'p' }), /NATS_PASSWORD is set without NATS_USER/);
    assert.throws(() => natsClientFromEnv({ NATS_TLS_CERT: '/c.pem' }), /NATS_TLS_CERT and NATS_TLS_KEY go together/);
  });

  it('connects to a token-protected server with NATS_TOKEN and is refused with a wrong one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'forgebus-token-auth-'));
    const configFile = join(dir, 'server.conf');
    writeFileSync(configFile, JSON.stringify({ host: '127.0.0.1', port: -1, jetstream: { store_dir: join(dir, 'js') }, authorization: { token: 's3cret-token' } }));
    const server = await startNatsServer({ configFile, storeDir: dir });
    try {
      const nc = await connectBus({ ...natsClientFromEnv({ NATS_URL: server.url, NATS_TOKEN: 's3cret-token' }), name: 'token-test', waitOnFirstConnect: false });
      assert.equal(nc.isClosed(), false);
      await nc.close();
      await assert.rejects(connectBus({ ...natsClientFromEnv({ NATS_URL: server.url, NATS_TOKEN: 'wrong' }), name: 'token-test', waitOnFirstConnect: false }), /Authorization Violation/i);
      await assert.rejects(connectBus({ servers: server.url, name: 'creds-test', credsFile: join(dir, 'missing.creds') }), (err: unknown) => err instanceof ForgeBusConfigError && /cannot read NATS creds file/.test(err.message));
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

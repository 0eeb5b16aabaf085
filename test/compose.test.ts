import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadForgeNodeConfig } from '../src/forge-node/config.js';

// There is no Docker engine on the build machines: this test keeps docker-compose.yml true by
// reading it and checking it against what the code expects.
const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as {
  services: Record<string, { command?: string[]; environment?: Record<string, string>; ports?: string[]; volumes?: string[]; image?: string }>;
};

describe('docker-compose.yml', () => {
  const nodes = Object.entries(compose.services).filter(([name]) => name.startsWith('node-'));

  it('runs nats-server with JetStream and monitoring on 8222', () => {
    const nats = compose.services.nats!;
    assert.ok(nats.command!.includes('-js'));
    assert.equal(nats.command![nats.command!.indexOf('-m') + 1], '8222');
    assert.ok(nats.ports!.includes('8222:8222'));
  });

  it('runs three forge nodes whose environment the node accepts, sharing data, secret and NATS', () => {
    assert.equal(nodes.length, 3);
    const configs = nodes.map(([, svc]) => loadForgeNodeConfig({ ...svc.environment, FORGE_SECRET: svc.environment!.FORGE_SECRET!.replace(/^\$\{FORGE_SECRET:-(.*)\}$/, '$1') }));
    assert.deepEqual(configs.map((c) => c.nodeId), ['node-1', 'node-2', 'node-3']);
    assert.deepEqual(configs.map((c) => c.port), [3001, 3002, 3003]);
    assert.equal(new Set(configs.map((c) => c.dataDir)).size, 1);
    assert.equal(new Set(configs.map((c) => c.secret)).size, 1);
    assert.ok(configs.every((c) => c.nats.servers === 'nats://nats:4222'));
    for (const [name, svc] of nodes) {
      assert.deepEqual(svc.command, ['node', 'dist/src/forge-node/main.js'], name);
      assert.ok(svc.volumes!.includes('forge-data:/data'), name);
      assert.ok(svc.ports!.includes(`${svc.environment!.PORT}:${svc.environment!.PORT}`), name);
    }
  });

  it('points at the built entry point that exists after npm run build', () => {
    assert.doesNotThrow(() => readFileSync(new URL('../src/forge-node/main.js', import.meta.url)));
  });
});

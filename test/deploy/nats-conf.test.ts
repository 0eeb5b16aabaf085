import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { forgeNodePermissions, operatorPermissions, type Permissions } from '../../src/ops/nats-config.js';
import { exampleEnv, loadCompose, natsConf, parseEnvFile, readRepoFile } from './deploy-files.js';
import { EnvRef, parseNatsConf, type ConfMap, type ConfValue } from './nats-conf.js';
import { localNatsConf, natsServerBinary, versionOf } from './servers.js';

/**
 * deploy/nats/nats-server.conf (what compose's three NATS servers run) against
 * src/ops/nats-config.ts (what `npm start` and the security tests run): the same users with the
 * same permissions, so test/ha/security.test.ts's proofs hold for the deployment too. That the
 * file runs, clusters and admits the nodes is test/deploy/stack.test.ts.
 */

/** Permissions as a comparable value: each list sorted (order means nothing to nats-server), duplicates kept. */
function normalized(p: unknown): unknown {
  const perms = p as { publish?: { allow?: string[]; deny?: string[] }; subscribe?: { allow?: string[]; deny?: string[] } };
  const side = (s?: { allow?: string[]; deny?: string[] }) => s && Object.fromEntries(Object.entries(s).map(([k, list]) => [k, [...list].sort()]));
  return { ...perms, publish: side(perms.publish), subscribe: side(perms.subscribe) };
}

function user(conf: ConfMap, name: string): ConfMap {
  const users = (conf.authorization as ConfMap).users as ConfMap[];
  const found = users.filter((u) => u.user === name);
  assert.equal(found.length, 1, `one user ${name}`);
  return found[0]!;
}

function envRefs(value: ConfValue, out: string[] = []): string[] {
  if (value instanceof EnvRef) out.push(value.name);
  else if (Array.isArray(value)) value.forEach((v) => envRefs(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => envRefs(v, out));
  return out;
}

describe('deploy/nats/nats-server.conf', () => {
  const conf = natsConf();

  it('has exactly the users forge-node and operator', () => {
    const users = ((conf.authorization as ConfMap).users as ConfMap[]).map((u) => u.user);
    assert.deepEqual(users, ['forge-node', 'operator']);
  });

  it("gives forge-node exactly forgeNodePermissions() and operator exactly operatorPermissions()", () => {
    const expect = (name: string, permissions: Permissions) => {
      const got = user(conf, name).permissions;
      const strings = JSON.stringify(got);
      // An unquoted $JS… subject would be read as a variable by nats-server (and here as an EnvRef).
      assert.ok(envRefs(got!).length === 0, `${name}'s permissions reference variables: ${envRefs(got!).join(', ')}`);
      assert.deepEqual(normalized(got), normalized(permissions), `${name}: ${strings.slice(0, 200)}…`);
      const lists = [...permissions.publish.allow, ...permissions.subscribe.allow];
      const gotLists = [...((got as any).publish.allow as string[]), ...((got as any).subscribe.allow as string[])];
      assert.equal(gotLists.length, lists.length, `${name}: no entry twice`);
    };
    expect('forge-node', forgeNodePermissions());
    expect('operator', operatorPermissions());
  });

  it('keeps every secret out of the file: passwords are environment references', () => {
    assert.ok(user(conf, 'forge-node').password instanceof EnvRef);
    assert.ok(user(conf, 'operator').password instanceof EnvRef);
    const cluster = conf.cluster as ConfMap;
    assert.ok((cluster.authorization as ConfMap).password instanceof EnvRef);
    // Route URLs carry the route password: they come whole from the environment too.
    const routes = cluster.routes as ConfValue[];
    assert.equal(routes.length, 3);
    assert.ok(routes.every((r) => r instanceof EnvRef), 'route URLs from the environment');
    assert.deepEqual(envRefs(conf).sort(), ['NATS_FORGE_PASSWORD', 'NATS_OPERATOR_PASSWORD', 'NATS_ROUTE_1', 'NATS_ROUTE_2', 'NATS_ROUTE_3', 'NATS_ROUTE_PASSWORD']);
  });

  it('runs JetStream, monitoring and a cluster on the usual ports', () => {
    assert.equal(conf.listen, '0.0.0.0:4222');
    assert.equal(conf.http, '0.0.0.0:8222');
    assert.equal((conf.jetstream as ConfMap).store_dir, '/data');
    assert.equal((conf.jetstream as ConfMap).sync_interval, 'always', 'fsync before acknowledging (nats-server 2.10+, docs/operations.md)');
    assert.equal((conf.cluster as ConfMap).listen, '0.0.0.0:6222');
    assert.equal((conf.cluster as ConfMap).name, 'forgebus');
  });

  it('is read by a reader that follows nats-server: variables, blocks, arrays, quotes, comments', () => {
    const parsed = parseNatsConf(
      [
        '# comment',
        'A: { x: 1, y: "$JS.API.INFO" }   // another',
        'list = [ a, "b c"',
        '  $A',
        '  $FROM_ENV ]',
        'outer { inner: $A, url: nats-route://u:p@h:6222 }',
        "single: 'it is'",
        'flag: true',
      ].join('\n'),
      { FROM_ENV: 'from env' },
    );
    assert.deepEqual(parsed.A, { x: 1, y: '$JS.API.INFO' });
    assert.deepEqual(parsed.list, ['a', 'b c', { x: 1, y: '$JS.API.INFO' }, 'from env']);
    assert.deepEqual((parsed.outer as ConfMap).inner, { x: 1, y: '$JS.API.INFO' });
    assert.equal((parsed.outer as ConfMap).url, 'nats-route://u:p@h:6222');
    assert.equal(parsed.flag, true);
    assert.equal(parsed.single, 'it is');
    assert.ok(parseNatsConf('p: $MISSING').p instanceof EnvRef);
    assert.throws(() => parseNatsConf('a { b: 1'), /missing \}/);
  });

  it("is accepted by nats-server with the secrets the env example's generator makes (they must not read as numbers)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'forgebus-envgen-'));
    try {
      // The generator line of deploy/forgebus.env.example, run as documented from a checkout.
      const line = readRepoFile('deploy/forgebus.env.example').split('\n').find((l) => l.includes('openssl rand'))!.replace(/^#\s*/, '');
      mkdirSync(join(dir, 'deploy'));
      writeFileSync(join(dir, 'deploy/forgebus.env.example'), readRepoFile('deploy/forgebus.env.example'));
      execFileSync('sh', ['-c', line], { cwd: dir });
      const example = exampleEnv();
      const generated = parseEnvFile(readFileSync(join(dir, 'deploy/forgebus.env'), 'utf8'));
      assert.deepEqual(Object.keys(generated).sort(), Object.keys(example).sort());
      const values = Object.values(generated);
      assert.equal(new Set(values).size, values.length, 'every secret its own');
      for (const [k, v] of Object.entries(generated)) {
        assert.notEqual(v, example[k], k);
        assert.match(v, /^[A-Za-z][A-Za-z0-9-]{15,}$/, k);
      }
      // nats-server -t with them, given as compose gives them to nats-1.
      const bin = natsServerBinary();
      const file = join(dir, 'nats.conf');
      writeFileSync(file, localNatsConf({ client: 4222, monitor: 8222, cluster: 6222 }, join(dir, 'store'), versionOf(bin)));
      const serverEnv = loadCompose(generated).compose.services['nats-1']!.environment!;
      const check = (e: Record<string, string>) => spawnSync(bin, ['-t', '-c', file], { env: { PATH: process.env.PATH ?? '', ...e }, encoding: 'utf8' });
      const ok = check(serverEnv);
      assert.equal(ok.status, 0, ok.stderr);
      // Why the generator starts each value with a letter: hex that reads as a number stops the server.
      assert.notEqual(check({ ...serverEnv, NATS_FORGE_PASSWORD: '3e1fab' }).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

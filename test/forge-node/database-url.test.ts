import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../src/ops/local-nats.js';
import { startForgeNode } from '../support/forge-node.js';
import { startTestNats, type TestNats } from '../support/nats.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

// FORGE_DATABASE_URL that cannot be used: the node does not start, and says why in one line that
// names the server and what to do, never the password.
describe('a forge node whose FORGE_DATABASE_URL cannot be used', () => {
  let nats: TestNats;
  let postgres: TestPostgres;
  let dataDir: string;

  before(async () => {
    [nats, postgres] = await Promise.all([startTestNats(), startTestPostgres()]);
    dataDir = mkdtempSync(join(tmpdir(), 'forgebus-dburl-'));
  });

  after(async () => {
    await nats?.dispose();
    await postgres?.dispose();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const startFailure = async (url: string): Promise<string> => {
    try {
      const node = await startForgeNode({ id: 'db-url', natsUrl: nats.url, dataDir, env: { FORGE_DATABASE_URL: url } });
      await node.stop();
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail(`the node started with FORGE_DATABASE_URL=${url}`);
  };

  it('names a server that refuses connections, without the password', async () => {
    const port = await freePort();
    const message = await startFailure(`postgres://forge:s3cret-pw@127.0.0.1:${port}/forge`);
    assert.match(message, /exited with code 1 during start-up/);
    assert.match(message, new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${port}/forge as forge refused the connection: is it running`));
    assert.doesNotMatch(message, /s3cret-pw/);
  });

  it('says to create a database that does not exist', async () => {
    const message = await startFailure(`postgres://forge@127.0.0.1:${postgres.port}/no_such_db`);
    assert.match(message, /no_such_db as forge has no such database: create it \(createdb\)/);
  });

  it('refuses a URL that is not PostgreSQL before connecting to anything', async () => {
    const message = await startFailure('mysql://forge:s3cret-pw@127.0.0.1:3306/forge');
    assert.match(message, /FORGE_DATABASE_URL must be a postgres:\/\/ URL/);
    assert.doesNotMatch(message, /s3cret-pw/);
  });
});

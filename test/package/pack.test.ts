import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { startTestNats, type TestNats } from '../support/nats.js';
import { runProcess, type ProcessRun } from '../support/run-process.js';

// The package as a user receives it: `npm pack`, installed into a fresh project outside the
// repository, then type-checked, imported, required and run there against a real nats-server.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixtures = join(root, 'test/package/consumer');

/** What a user who installs forgebus (and, for forgebus/nest, the Nest peers) has in package.json. */
const CONSUMER_DEPENDENCIES = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/microservices',
  '@nestjs/terminus',
  '@nestjs/config',
  'class-validator',
  'reflect-metadata',
  'rxjs',
];
const CONSUMER_DEV_DEPENDENCIES = ['typescript', '@types/node'];

/** The files a published forgebus may contain: the compiled entries and their modules, docs. */
const SHIPPED =
  /^(package\.json|README\.md|LICENSE|dist\/src\/index\.(js|d\.ts)|dist\/src\/(bus|cache|sse|repo-writes|cluster|nest)\/.+\.(js|d\.ts)|dist\/src\/ops\/(status-cli|nats-env|local-nats|nats-config|nats-server|apt)\.(js|d\.ts)|dist\/src\/ops\/status\/[\w-]+\.(js|d\.ts))$/;

type Run = ProcessRun;

/** npm run by `npm test` exports its own settings (npm_config_local_prefix …): not for the consumer. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_(package|lifecycle|config_(local_)?prefix|command|execpath|node_execpath)/i.test(key)));
  return { ...env, ...extra };
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return runProcess(command, args, { cwd, env, timeoutMs });
}

function mustSucceed(result: Run, what: string): Run {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** The code block that follows `<!-- example: name … -->` in README.md. */
function readmeExample(name: string): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const match = new RegExp(`<!-- example: ${name}\\b[^>]*-->\\s*\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme);
  assert.ok(match, `README.md has no "${name}" example`);
  return match[1]!;
}

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

describe('the packed package, installed in a fresh project', () => {
  let nats: TestNats;
  let work: string;
  let project: string;
  let packed: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'forgebus-pack-'));
    project = join(work, 'consumer');
    const pack = mustSucceed(await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], root, cleanEnv(), 120_000), 'npm pack');
    packed = (JSON.parse(pack.stdout) as (typeof packed)[])[0]!;
    cpSync(fixtures, project, { recursive: true });
    writeFileSync(join(project, 'readme-sdk.ts'), readmeExample('sdk'));
    writeFileSync(join(project, 'readme-nest.ts'), readmeExample('nest'));
    const pin = (names: string[]) => Object.fromEntries(names.map((n) => [n, installedVersion(n)]));
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify(
        {
          name: 'forgebus-consumer',
          private: true,
          type: 'module',
          dependencies: { forgebus: `file:${join(work, packed.filename)}`, ...pin(CONSUMER_DEPENDENCIES) },
          devDependencies: pin(CONSUMER_DEV_DEPENDENCIES),
        },
        null,
        2,
      ),
    );
    mustSucceed(
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], project, cleanEnv(), 600_000),
      'npm install of the tarball',
    );
    nats = await startTestNats();
  });

  after(async () => {
    await nats?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships the compiled library, its types, the status bin, README and LICENSE, and nothing else', () => {
    const paths = packed.files.map((f) => f.path);
    const unexpected = paths.filter((p) => !SHIPPED.test(p));
    assert.deepEqual(unexpected, [], 'files a user does not need');
    for (const entry of ['', 'cache/', 'sse/', 'repo-writes/', 'cluster/', 'nest/']) {
      assert.ok(paths.includes(`dist/src/${entry}index.js`) && paths.includes(`dist/src/${entry}index.d.ts`), `entry ${entry || '.'} shipped with types`);
    }
    const installed = readdirSync(join(project, 'node_modules/forgebus/dist/src'));
    assert.ok(!installed.includes('forge-node'), 'the example node is not shipped');
    // Of the operators' tools, only `forgebus status` (the package's bin) and what it needs.
    const ops = readdirSync(join(project, 'node_modules/forgebus/dist/src/ops')).filter((f) => f.endsWith('.js')).sort();
    assert.deepEqual(ops, ['apt.js', 'local-nats.js', 'nats-config.js', 'nats-env.js', 'nats-server.js', 'status-cli.js'], 'no launcher, settings or token tool');
    console.log(`# packed ${packed.filename}: ${packed.size} bytes, unpacked ${packed.unpackedSize} bytes, ${paths.length} files`);
  });

  it('type-checks a strict TypeScript consumer of every entry point and the README examples', async () => {
    const tsc = join(project, 'node_modules/typescript/bin/tsc');
    const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], project, cleanEnv(), 180_000);
    assert.equal(result.code, 0, `tsc found errors in the consumer:\n${result.stdout}${result.stderr}`);
  });

  const scenario = (file: string) => async () => {
    const result = mustSucceed(await run(process.execPath, [file], project, cleanEnv({ NATS_URL: nats.url }), 60_000), file);
    const report = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {
      published: { seq: number; id: string };
      received: { seq: number; id: string; number: number };
      sseStatus: number;
      sseContentType: string;
      sseFrame: string;
      loadsBeforeEvent: number;
      loadsAfterEvent: number;
      write: { file: string; repo: string };
      invalidPublish: { isForgeBusError: boolean; code: string };
      nestExports: string[];
      clusterExports: string[];
    };
    assert.deepEqual(report.received, { seq: report.published.seq, id: report.published.id, number: 3 }, 'the feed delivered the published event');
    assert.equal(report.sseStatus, 200);
    assert.match(report.sseContentType, /^text\/event-stream/);
    assert.match(report.sseFrame, new RegExp(`^id: ${report.published.seq}\\nevent: issue\\.deleted\\ndata: \\{.*"number":3`), 'SSE frame with the stream sequence as id');
    assert.equal(report.loadsBeforeEvent, 1, 'the second read came from the cache');
    assert.equal(report.loadsAfterEvent, 2, 'the event invalidated the cached read');
    assert.equal(report.write.file, 'README.md', 'the repository write was applied and answered');
    assert.deepEqual(report.invalidPublish, { isForgeBusError: true, code: 'INVALID_EVENT', name: 'InvalidEventError' });
    for (const name of ['ForgeBusModule', 'OnForgeEvent', 'ForgeCacheModule', 'RepoWritesModule', 'SseModule', 'ClusterModule', 'ForgeBusServer', 'ForgeBusClient']) {
      assert.ok(report.nestExports.includes(name), `forgebus/nest exports ${name}`);
    }
    assert.ok(report.clusterExports.includes('Membership'), 'forgebus/cluster exports Membership');
  };

  it('runs an ES module consumer: event, cache, repository write, SSE stream', scenario('esm-consumer.mjs'));
  it('runs a CommonJS consumer (require) of the same', scenario('cjs-consumer.cjs'));

  it('installs the forgebus bin: `forgebus status --json` reads a real nats-server', async () => {
    const bin = join(project, 'node_modules/.bin/forgebus');
    const result = mustSucceed(await run(bin, ['status', '--json', '--nats', nats.url, '--monitor', nats.monitorUrl!], project, cleanEnv({ FORGE_DATA_DIR: join(work, 'none') }), 60_000), 'forgebus status');
    const status = JSON.parse(result.stdout) as { nats: { servers: { name: string; healthy?: boolean }[] }; events?: { name: string }; problems: string[] };
    assert.equal(status.nats.servers.length, 1);
    assert.equal(status.nats.servers[0]!.healthy, true);
    assert.equal(status.events?.name, 'FORGE_EVENTS', 'the stream the consumers above created');
    assert.deepEqual(status.problems, []);
  });

  it('runs the README SDK example', async () => {
    const result = mustSucceed(await run(process.execPath, ['out/readme-sdk.js'], project, cleanEnv({ NATS_URL: nats.url }), 60_000), 'README SDK example');
    assert.match(result.stdout, /stored at \d+; cached issues left: 0/);
  });

  it('boots the README Nest application (forRootAsync, @OnForgeEvent) and receives its event', async () => {
    const result = mustSucceed(
      await run(process.execPath, ['out/readme-nest.js'], project, cleanEnv({ NATS_URL: nats.url, NODE_ID: 'readme-nest' }), 60_000),
      'README Nest example',
    );
    assert.match(result.stdout, /issue #3 deleted \(event \d+\)/);
  });
});

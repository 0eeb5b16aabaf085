import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, posix } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadForgeNodeConfig, type ForgeNodeConfig } from '../src/forge-node/config.js';
import { EnvRef, type ConfMap, type ConfValue } from './deploy/nats-conf.js';
import {
  bindMounts,
  directive,
  directives,
  exampleEnv,
  hostPort,
  loadCompose,
  MissingVariableError,
  mountedFile,
  natsConf,
  natsServiceNames,
  nginxSize,
  nginxTimeMs,
  nodeServiceNames,
  parseNginxConf,
  readRepoFile,
  repoFileExists,
  repoPath,
  type NginxDirective,
} from './deploy/deploy-files.js';

/**
 * There is no Docker engine on the build machines: this test keeps docker-compose.yml true by
 * reading it, with deploy/forgebus.env.example's values, and checking it against the code and the
 * files it mounts. The files themselves run for real in test/deploy/stack.test.ts.
 */

const env = exampleEnv();
const { compose, used } = loadCompose(env);
const services = compose.services;
const nodes = nodeServiceNames(compose);
const natsServers = natsServiceNames(compose);
const conf = natsConf();
const pkg = JSON.parse(readRepoFile('package.json')) as { version: string };
const execFileP = promisify(execFile);

const portOf = (address: string) => hostPort(address).port;
const CLIENT_PORT = portOf(conf.listen as string);
const MONITOR_PORT = portOf(conf.http as string);
const CLUSTER_PORT = portOf((conf.cluster as ConfMap).listen as string);

/** The value a nats service's environment gives a variable the NATS configuration references. */
function natsEnv(service: string, ref: ConfValue): string {
  assert.ok(ref instanceof EnvRef, `expected an environment reference, got ${JSON.stringify(ref)}`);
  const value = services[service]!.environment?.[ref.name];
  assert.ok(value, `${service} sets ${ref.name}`);
  return value;
}

function natsUser(name: string): ConfMap {
  return ((conf.authorization as ConfMap).users as ConfMap[]).find((u) => u.user === name)!;
}

/** A compose port mapping: [host address:]host port:container port. */
function portMapping(spec: string): { hostIp?: string; host: number; container: number } {
  const parts = spec.split(':');
  const container = Number(parts.at(-1));
  const host = Number(parts.at(-2));
  return { hostIp: parts.length === 3 ? parts[0] : undefined, host, container };
}

/** The healthcheck's command in exec form: ["CMD", tool, …args]. */
function healthcheck(name: string): string[] {
  const test = services[name]!.healthcheck?.test;
  assert.ok(Array.isArray(test), `${name} has a healthcheck in exec form`);
  assert.equal(test[0], 'CMD', `${name}: CMD (exec form: it needs no shell in the image)`);
  return test.slice(1);
}

/** The Dockerfile's stages: FROM line and instructions. */
function dockerfileStages(text: string): { from: string; name?: string; lines: string[] }[] {
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: { from: string; name?: string; lines: string[] }[] = [];
  for (const line of joined) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?$/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2], lines: [] });
    else stages.at(-1)!.lines.push(line);
  }
  return stages;
}

describe('docker-compose.yml', () => {
  const nodeConfigs = new Map<string, ForgeNodeConfig>(nodes.map((n) => [n, loadForgeNodeConfig(services[n]!.environment!)]));

  it('has the services of a deployment: three NATS servers, PostgreSQL, three forge nodes, nginx, Prometheus', () => {
    assert.deepEqual(Object.keys(services).sort(), ['nats-1', 'nats-2', 'nats-3', 'nginx', 'node-1', 'node-2', 'node-3', 'postgres', 'prometheus']);
  });

  it('reads every secret from the env file: each variable it references is in deploy/forgebus.env.example and vice versa, and none has a default', () => {
    assert.deepEqual([...used].sort(), Object.keys(env).sort());
    // Without --env-file (or with a variable missing) compose stops with a message, instead of
    // starting with empty passwords.
    for (const name of Object.keys(env)) {
      const { [name]: _left, ...rest } = env;
      assert.throws(() => loadCompose(rest), (err) => err instanceof MissingVariableError && err.message.includes(name) && err.message.includes('deploy/forgebus.env.example'), name);
    }
    assert.ok(!readRepoFile('docker-compose.yml').includes(':-'), 'no ${VAR:-default}: a secret must never fall back to a known value');
    for (const [name, svc] of Object.entries(services)) assert.equal(svc.env_file, undefined, `${name}: no env_file (it would hand every secret to every service)`);
    // The header tells how to run it.
    assert.match(readRepoFile('docker-compose.yml'), /docker compose --env-file deploy\/forgebus\.env up/);
    const dockerignore = readRepoFile('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['deploy/forgebus.env', 'node_modules', 'dist', '.git']) assert.ok(dockerignore.includes(entry), `.dockerignore lists ${entry}`);
  });

  it('pins every image to a tag and gives each a healthcheck whose tool exists in that image', async () => {
    // What each image has: the scratch-based nats:2.x image has neither a shell nor wget (the
    // healthcheck of the old compose file could never pass); its -alpine variant has busybox.
    const tools: { image: RegExp; has: string[] }[] = [
      { image: /^nats:\d+\.\d+(\.\d+)?-alpine$/, has: ['wget'] },
      { image: /^postgres:\d+(\.\d+)?-(alpine|bookworm)$/, has: ['pg_isready'] },
      { image: /^nginx:\d+\.\d+(\.\d+)?-alpine$/, has: ['wget'] },
      { image: /^prom\/prometheus:v\d+\.\d+\.\d+$/, has: ['wget'] }, // busybox-based
      { image: new RegExp(`^forgebus-node:${pkg.version.replace(/\./g, '\\.')}$`), has: ['node'] }, // deploy/Dockerfile
    ];
    for (const [name, svc] of Object.entries(services)) {
      assert.ok(svc.image, `${name} names its image`);
      const tag = svc.image.split(':')[1];
      assert.ok(tag && tag !== 'latest', `${name}: ${svc.image} is pinned to a tag`);
      const known = tools.find((t) => t.image.test(svc.image!));
      assert.ok(known, `${name}: ${svc.image} is one of the images this test knows`);
      const [tool] = healthcheck(name);
      assert.ok(known.has.includes(tool!), `${name}: its healthcheck runs ${tool}, which ${svc.image} has`);
    }
    // The nodes' image is built here, from deploy/Dockerfile, and has node.
    for (const n of nodes) assert.deepEqual(services[n]!.build, { context: '.', dockerfile: 'deploy/Dockerfile' });
    assert.match(dockerfileStages(readRepoFile('deploy/Dockerfile')).at(-1)!.from, /^node:\d+-bookworm-slim$/);

    // The nodes' healthcheck, run with this node against a server that answers like a node.
    const [, flag, script] = healthcheck('node-1');
    assert.equal(flag, '-e');
    const url = new URL(/fetch\('([^']+)'\)/.exec(script!)![1]!);
    assert.equal(url.pathname, '/health');
    assert.equal(url.port, services['node-1']!.environment!.PORT);
    let status = 200;
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/health' ? status : 404;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const local = script!.replace(url.origin, `http://127.0.0.1:${(server.address() as { port: number }).port}`);
    const run = () => execFileP(process.execPath, ['-e', local]).then(() => 0, (err: { code?: number }) => err.code ?? -1);
    try {
      assert.equal(await run(), 0, 'healthy when /health answers 200');
      status = 503;
      assert.equal(await run(), 1, 'unhealthy when /health answers 503 (NATS down, feed stuck)');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    assert.equal(await run(), 1, 'unhealthy when nothing listens');
  });

  it('mounts only repository files, read-only, and keeps data in named volumes: nothing writes into the checkout', () => {
    const declared = Object.keys(compose.volumes ?? {});
    const usedVolumes = new Set<string>();
    for (const [name, svc] of Object.entries(services)) {
      for (const spec of svc.volumes ?? []) {
        const [source, target] = spec.split(':');
        if (/^[./~]/.test(source!)) continue;
        assert.ok(declared.includes(source!), `${name}: volume ${source} is declared`);
        assert.ok(target?.startsWith('/'), `${name}: ${spec}`);
        usedVolumes.add(source!);
      }
      for (const m of bindMounts(svc)) {
        assert.match(m.source, /^\.\/deploy\/[^.][^:]*$/, `${name}: binds only files under deploy/ (${m.source})`);
        assert.equal(m.mode, 'ro', `${name}: ${m.source} is mounted read-only`);
        assert.ok(repoFileExists(m.source) && statSync(repoPath(m.source)).isFile(), `${name}: ${m.source} exists in the repository`);
      }
    }
    assert.deepEqual([...usedVolumes].sort(), declared.sort(), 'every declared volume is used');
  });

  it('publishes distinct host ports, and NATS monitoring and Prometheus on loopback only', () => {
    const hostPorts = Object.values(services).flatMap((s) => (s.ports ?? []).map((p) => portMapping(p).host));
    assert.equal(new Set(hostPorts).size, hostPorts.length, `host ports ${hostPorts.join(', ')}`);
    for (const name of [...natsServers, 'prometheus']) {
      for (const p of services[name]!.ports ?? []) assert.equal(portMapping(p).hostIp, '127.0.0.1', `${name}: ${p}`);
    }
    for (const n of nodes) assert.equal(services[n]!.ports, undefined, `${n} is reached through nginx only`);
    for (const [name, svc] of Object.entries(services)) {
      for (const [dep, cond] of Object.entries((svc.depends_on ?? {}) as Record<string, { condition: string }>)) {
        assert.ok(services[dep], `${name} depends on ${dep}, a service`);
        if (cond.condition === 'service_healthy') assert.ok(services[dep]!.healthcheck, `${name} waits for ${dep} to be healthy: it has a healthcheck`);
      }
    }
  });

  describe('NATS', () => {
    it('runs three servers of one cluster, each with deploy/nats/nats-server.conf, its own name and its own store volume', () => {
      assert.deepEqual(natsServers, ['nats-1', 'nats-2', 'nats-3']);
      const stores = new Set<string>();
      for (const name of natsServers) {
        const svc = services[name]!;
        const cmd = svc.command as string[];
        assert.deepEqual(cmd, ['nats-server', '--config', cmd[2], '--name', name]);
        assert.equal(mountedFile(svc, cmd[2]!), 'deploy/nats/nats-server.conf');
        const store = (svc.volumes ?? []).find((v) => v.endsWith(`:${(conf.jetstream as ConfMap).store_dir}`));
        assert.ok(store && !store.startsWith('.'), `${name}: the JetStream store ${(conf.jetstream as ConfMap).store_dir} is a named volume`);
        stores.add(store.split(':')[0]!);
        // Every variable of the configuration comes from this service's environment.
        for (const ref of ['NATS_FORGE_PASSWORD', 'NATS_OPERATOR_PASSWORD', 'NATS_ROUTE_PASSWORD', 'NATS_ROUTE_1', 'NATS_ROUTE_2', 'NATS_ROUTE_3']) natsEnv(name, new EnvRef(ref));
        const ports = (svc.ports ?? []).map(portMapping).map((p) => p.container).sort();
        assert.deepEqual(ports, [CLIENT_PORT, MONITOR_PORT].sort(), `${name} publishes its client and monitoring ports`);
        assert.deepEqual(healthcheck(name), ['wget', '-q', '-O', '/dev/null', `http://127.0.0.1:${MONITOR_PORT}/healthz`]);
      }
      assert.equal(stores.size, 3, 'one store per server');
    });

    it('routes every server to all three, authenticated as the route user of the configuration', () => {
      const cluster = conf.cluster as ConfMap;
      const routeUser = (cluster.authorization as ConfMap).user as string;
      for (const name of natsServers) {
        const routePassword = natsEnv(name, (cluster.authorization as ConfMap).password!);
        const urls = (cluster.routes as ConfValue[]).map((r) => new URL(natsEnv(name, r)));
        assert.deepEqual(urls.map((u) => u.hostname).sort(), natsServers, `${name}: routes to ${urls.map((u) => u.host).join(', ')}`);
        for (const u of urls) {
          assert.equal(u.protocol, 'nats-route:');
          assert.equal(Number(u.port), CLUSTER_PORT);
          assert.equal(decodeURIComponent(u.username), routeUser);
          assert.equal(decodeURIComponent(u.password), routePassword);
        }
      }
      const routePasswords = new Set(natsServers.map((n) => natsEnv(n, (cluster.authorization as ConfMap).password!)));
      assert.equal(routePasswords.size, 1, 'one route password');
    });
  });

  describe('forge nodes', () => {
    it('runs three nodes whose environment the node accepts, with their own ids and one secret, data volume and database', () => {
      assert.deepEqual(nodes, ['node-1', 'node-2', 'node-3']);
      const configs = [...nodeConfigs.values()];
      assert.deepEqual(configs.map((c) => c.nodeId), nodes);
      assert.equal(new Set(configs.map((c) => c.secret)).size, 1);
      assert.equal(configs[0]!.secret, env.FORGE_SECRET);
      assert.equal(new Set(configs.map((c) => c.dataDir)).size, 1);
      assert.equal(new Set(configs.map((c) => c.databaseUrl)).size, 1);
      for (const [name, config] of nodeConfigs) {
        assert.equal(config.host, '0.0.0.0', `${name} listens on the container's network`);
        const volume = (services[name]!.volumes ?? []).find((v) => v.endsWith(`:${config.dataDir}`));
        assert.ok(volume, `${name}: FORGE_DATA_DIR ${config.dataDir} is a mounted volume`);
        assert.equal(volume.split(':')[0], 'forge-repos', `${name} shares the repositories' volume`);
        assert.equal(services[name]!.init, true, `${name}: an init process reaps git's children`);
        for (const dep of [...natsServers, 'postgres']) {
          assert.equal((services[name]!.depends_on as Record<string, { condition: string }>)[dep]?.condition, 'service_healthy', `${name} waits for ${dep}`);
        }
      }
    });

    it('connects every node to all three NATS servers as the forge-node user, and shows their monitoring', () => {
      const forgeUser = natsUser('forge-node');
      for (const [name, config] of nodeConfigs) {
        const servers = config.nats.servers.split(',').map((s) => new URL(s.trim()));
        assert.deepEqual(servers.map((u) => u.hostname).sort(), natsServers, `${name}: NATS_URL names every nats service`);
        assert.ok(servers.every((u) => u.protocol === 'nats:' && Number(u.port) === CLIENT_PORT), `${name}: on the client port ${CLIENT_PORT}`);
        assert.equal(config.nats.user, forgeUser.user);
        for (const n of natsServers) assert.equal(config.nats.pass, natsEnv(n, forgeUser.password!), `${name}: the forge-node password ${n} knows`);
        const monitors = config.natsMonitorUrls.map((m) => new URL(m));
        assert.deepEqual(monitors.map((u) => u.hostname).sort(), natsServers, `${name}: NATS_MONITOR_URL names every nats service`);
        assert.ok(monitors.every((u) => u.protocol === 'http:' && Number(u.port) === MONITOR_PORT), `${name}: on the monitoring port ${MONITOR_PORT}`);
      }
    });

    it('points FORGE_DATABASE_URL at the postgres service, its user, password and database', () => {
      const pg = services.postgres!;
      for (const [name, config] of nodeConfigs) {
        const url = new URL(config.databaseUrl!);
        assert.equal(url.protocol, 'postgres:');
        assert.equal(url.hostname, 'postgres', name);
        assert.equal(url.port, '5432');
        assert.equal(decodeURIComponent(url.username), pg.environment!.POSTGRES_USER);
        assert.equal(decodeURIComponent(url.password), pg.environment!.POSTGRES_PASSWORD);
        assert.equal(url.pathname, `/${pg.environment!.POSTGRES_DB}`);
      }
      assert.deepEqual(healthcheck('postgres'), ['pg_isready', '-h', '127.0.0.1', '-p', '5432', '-U', pg.environment!.POSTGRES_USER, '-d', pg.environment!.POSTGRES_DB]);
    });

    it("runs the image's command, whose entry file exists after npm run build, from deploy/Dockerfile", () => {
      const stages = dockerfileStages(readRepoFile('deploy/Dockerfile'));
      const [build, run] = [stages[0]!, stages.at(-1)!];
      assert.equal(stages.length, 2, 'a build stage and a run stage');
      assert.ok(build.lines.some((l) => /^RUN npm ci\b/.test(l)) && build.lines.some((l) => l === 'RUN npm run build'), 'npm ci and npm run build happen in the image');
      const cmd = JSON.parse(run.lines.find((l) => l.startsWith('CMD '))!.slice(4)) as string[];
      const workdir = run.lines.filter((l) => l.startsWith('WORKDIR ')).at(-1)!.slice(8);
      for (const n of nodes) assert.deepEqual(services[n]!.command, cmd, `${n} runs the image's CMD`);
      assert.deepEqual(cmd.slice(0, 1), ['node']);
      // The entry file: built into dist/ here, copied to WORKDIR/dist/src in the image.
      assert.ok(repoFileExists(cmd[1]!), `${cmd[1]} exists after npm run build`);
      assert.ok(run.lines.includes(`COPY --from=${build.name} ${workdir}/dist/src ./dist/src`), 'the run stage copies dist/src');
      assert.ok(run.lines.includes(`COPY --from=${build.name} ${workdir}/package.json ./`), 'and package.json ("type": "module", the version)');
      assert.ok(run.lines.some((l) => /apt-get install .*\bgit\b/.test(l)), 'git is installed');
      const user = run.lines.filter((l) => l.startsWith('USER ')).at(-1)?.slice(5);
      assert.ok(user && user !== 'root' && user !== '0', `runs as an unprivileged user (${user})`);
      assert.ok(run.lines.some((l) => l.includes('chown') && l.includes(services['node-1']!.environment!.FORGE_DATA_DIR!)), 'the data directory belongs to that user');
      assert.equal(new URL(/fetch\('([^']+)'\)/.exec(healthcheck('node-1')[2]!)![1]!).port, String(nodeConfigs.get('node-1')!.port));
    });
  });

  describe('nginx', () => {
    const nginx = services.nginx!;
    const mainTarget = '/etc/nginx/nginx.conf';
    const main = parseNginxConf(readRepoFile(mountedFile(nginx, mainTarget)));
    const http = directive(main, 'http').block!;
    const includeArg = directive(http, 'include').args[0]!;
    // nginx resolves a relative include against the main file's directory.
    const siteTarget = includeArg.startsWith('/') ? includeArg : posix.join(dirname(mainTarget), includeArg);
    const site = parseNginxConf(readRepoFile(mountedFile(nginx, siteTarget)));
    const upstream = directive(site, 'upstream');
    const server = directive(site, 'server').block!;
    const location = (...args: string[]) => {
      const found = directives(server, 'location').find((l) => l.args.join(' ') === args.join(' '));
      assert.ok(found, `location ${args.join(' ')}`);
      return found.block!;
    };
    const value = (block: NginxDirective[], name: string) => directive(block, name).args.join(' ');

    it('mounts nginx.conf and the site it includes, both from deploy/nginx', () => {
      assert.equal(mountedFile(nginx, mainTarget), 'deploy/nginx/nginx.conf');
      assert.equal(mountedFile(nginx, siteTarget), 'deploy/nginx/forgebus.conf');
    });

    it('balances over exactly the node services on their ports, with HTTP/1.1 keep-alive to them', () => {
      const servers = directives(upstream.block!, 'server').map((s) => s.args[0]!);
      assert.deepEqual(servers.sort(), nodes.map((n) => `${n}:${nodeConfigs.get(n)!.port}`).sort());
      assert.ok(Number(value(upstream.block!, 'keepalive')) > 0);
      // Node closes an idle connection after its keepAliveTimeout: nginx must let go first.
      const nodeKeepAlive = createServer().keepAliveTimeout;
      assert.ok(nginxTimeMs(value(upstream.block!, 'keepalive_timeout')) < nodeKeepAlive, `keepalive_timeout below Node's ${nodeKeepAlive} ms`);
      assert.ok(directives(upstream.block!, 'zone').length === 1, 'a shared zone: least_conn counts across workers');
      assert.equal(value(server, 'proxy_http_version'), '1.1');
      const headers = directives(server, 'proxy_set_header').map((h) => h.args);
      assert.ok(headers.some(([k, v]) => k === 'Connection' && v === ''), 'Connection "" (keep-alive to the upstream)');
      assert.ok(headers.some(([k, v]) => k === 'X-Forwarded-For' && v === '$proxy_add_x_forwarded_for'));
      // A location with a proxy_set_header of its own would drop all of these.
      for (const l of directives(server, 'location')) assert.equal(directives(l.block!, 'proxy_set_header').length, 0, `location ${l.args.join(' ')}`);
      for (const l of directives(server, 'location').filter((x) => directives(x.block!, 'proxy_pass').length > 0)) {
        assert.equal(value(l.block!, 'proxy_pass'), `http://${upstream.args[0]}`);
      }
    });

    it('serves event streams unbuffered with a long read timeout, and git pushes streamed and larger than the nodes accept', () => {
      const events = location('^~', '/api/events');
      assert.equal(value(events, 'proxy_buffering'), 'off');
      assert.ok(nginxTimeMs(value(events, 'proxy_read_timeout')) >= 3_600_000);
      const config = nodeConfigs.get('node-1')!;
      const git = location('~', '^/[^/]+/[^/]+\\.git/(info/refs|git-upload-pack|git-receive-pack)$');
      assert.ok(nginxSize(value(git, 'client_max_body_size')) > config.git.pushMaxBytes, 'above FORGE_PUSH_MAX_BYTES: the node answers an oversized push in git\'s format');
      assert.equal(value(git, 'proxy_request_buffering'), 'off');
      assert.ok(nginxTimeMs(value(git, 'proxy_read_timeout')) > config.git.pushTimeoutMs, 'above FORGE_PUSH_TIMEOUT_MS');
      assert.equal(value(location('=', '/metrics'), 'deny'), 'all');
    });

    it('publishes its listen port and checks its health on a location it answers itself', () => {
      const listen = Number(value(server, 'listen'));
      assert.deepEqual((nginx.ports ?? []).map(portMapping).map((p) => p.container), [listen]);
      const url = new URL(healthcheck('nginx').at(-1)!);
      assert.equal(Number(url.port || 80), listen);
      assert.deepEqual(directive(location('=', url.pathname), 'return').args.slice(0, 1), ['200']);
      for (const n of nodes) assert.equal((nginx.depends_on as Record<string, { condition: string }>)[n]?.condition, 'service_healthy');
    });
  });

  describe('Prometheus', () => {
    const prom = services.prometheus!;
    const flag = (name: string) => (prom.command as string[]).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

    it('scrapes /metrics of exactly the node services on their ports', () => {
      assert.equal(mountedFile(prom, flag('config.file')!), 'deploy/prometheus/prometheus.yml');
      const config = parse(readRepoFile('deploy/prometheus/prometheus.yml')) as { scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[] };
      const targets = config.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => s.targets));
      assert.deepEqual(targets.sort(), nodes.map((n) => `${n}:${nodeConfigs.get(n)!.port}`).sort());
      assert.ok(config.scrape_configs.every((j) => (j.metrics_path ?? '/metrics') === '/metrics'));
    });

    it('stores in a named volume and checks its health on its listen port', () => {
      const storage = flag('storage.tsdb.path')!;
      assert.ok((prom.volumes ?? []).some((v) => v === `prometheus-data:${storage}`));
      const listen = portOf(flag('web.listen-address')!);
      const url = new URL(healthcheck('prometheus').at(-1)!);
      assert.equal(Number(url.port), listen);
      assert.equal(url.pathname, '/-/healthy');
      assert.deepEqual((prom.ports ?? []).map(portMapping).map((p) => p.container), [listen]);
    });
  });
});

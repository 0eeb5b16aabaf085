import { accessSync, constants, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall, aptUnavailableReason } from './apt.js';

/**
 * The servers the deployment tests run for real: PostgreSQL (the API, cache, outbox and write
 * tests on PostgreSQL), nginx (the load balancer of deploy/nginx/) and Prometheus
 * (deploy/prometheus/prometheus.yml). `npm test` runs this file first: on a fresh Debian machine as root (CI) it
 * installs the missing Debian packages in one apt-get call (their services are not started by
 * us; the tests start their own instances on loopback ports); elsewhere it says what to install.
 */

export interface TestServer {
  /** Debian package that provides it. */
  package: string;
  /** What needs it, for the error message. */
  usedBy: string;
  /** The executable's path, or undefined when it is missing. */
  find(): string | undefined;
}

function executable(path: string): string | undefined {
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

/** Debian's PostgreSQL binaries directory (/usr/lib/postgresql/<major>/bin), newest major first. */
export function postgresBinDir(): string | undefined {
  if (process.env.POSTGRES_BIN_DIR) return executable(join(process.env.POSTGRES_BIN_DIR, 'initdb')) ? process.env.POSTGRES_BIN_DIR : undefined;
  let majors: string[];
  try {
    majors = readdirSync('/usr/lib/postgresql').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  majors.sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const dir = `/usr/lib/postgresql/${major}/bin`;
    if (executable(join(dir, 'initdb')) && executable(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

export const TEST_SERVERS: readonly TestServer[] = [
  { package: 'postgresql', usedBy: 'the tests on PostgreSQL (test/support/postgres.ts)', find: () => (postgresBinDir() ? join(postgresBinDir()!, 'initdb') : undefined) },
  { package: 'nginx', usedBy: 'the nginx test of deploy/nginx/ (test/deploy/stack.test.ts)', find: () => executable(process.env.NGINX_BIN || '/usr/sbin/nginx') },
  { package: 'prometheus', usedBy: 'the Prometheus test of deploy/prometheus/prometheus.yml (test/deploy/stack.test.ts)', find: () => executable(process.env.PROMETHEUS_BIN || '/usr/bin/prometheus') },
];

export type EnsureResult = { ok: true; installed: string[] } | { ok: false; reason: string };

export function ensureTestServers(log: (m: string) => void = (m) => console.error(m)): EnsureResult {
  const missing = TEST_SERVERS.filter((s) => !s.find());
  if (missing.length === 0) return { ok: true, installed: [] };
  const packages = missing.map((s) => s.package);
  const cannot = aptUnavailableReason();
  if (cannot) {
    return {
      ok: false,
      reason:
        `missing ${missing.map((s) => `${s.package} (${s.usedBy})`).join(', ')}, and they cannot be installed here (${cannot}). ` +
        `Install them with "apt-get install --no-install-recommends ${packages.join(' ')}" (Debian).`,
    };
  }
  log(`installing Debian packages ${packages.join(', ')} for the deployment tests (apt-get, no recommends) ...`);
  const started = Date.now();
  try {
    aptInstall(packages, { noRecommends: true });
  } catch (err) {
    return { ok: false, reason: `installing ${packages.join(', ')} failed: ${(err as Error).message}.` };
  }
  const still = missing.filter((s) => !s.find());
  if (still.length > 0) return { ok: false, reason: `apt-get reported success but ${still.map((s) => s.package).join(', ')} is still missing.` };
  log(`installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return { ok: true, installed: packages };
}

// `node dist/src/ops/ensure-test-servers.js` (part of `npm test`).
const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const result = ensureTestServers();
  if (!result.ok) {
    console.error(`test servers: ${result.reason}`);
    process.exit(1);
  }
  console.log(`test servers: ${TEST_SERVERS.map((s) => `${s.package} ${s.find()}`).join(', ')}`);
}

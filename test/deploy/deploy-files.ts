import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseNatsConf, type ConfMap } from './nats-conf.js';

/**
 * The repository's deployment files as compose sees them: docker-compose.yml with its `${…}`
 * references filled from deploy/forgebus.env.example (what `docker compose --env-file …` does),
 * the NATS, nginx and Prometheus files it mounts, and small readers for their syntaxes. Shared by
 * test/compose.test.ts (static checks) and test/deploy/stack.test.ts (the files run for real).
 */

/** The repository root (tests run from dist/test/…, the files live in the checkout). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function repoPath(relative: string): string {
  return `${REPO_ROOT}${relative.replace(/^\.\//, '')}`;
}

export function readRepoFile(relative: string): string {
  return readFileSync(repoPath(relative), 'utf8');
}

export function repoFileExists(relative: string): boolean {
  return existsSync(repoPath(relative));
}

/** `KEY=value` lines of an env file (comments and blank lines skipped; no quoting is used in ours). */
export function parseEnvFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`not a KEY=value line in the env file: ${line}`);
    vars[m[1]!] = m[2]!;
  }
  return vars;
}

export class MissingVariableError extends Error {}

/**
 * Compose's interpolation of one string: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`,
 * `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`. `used` collects every name referenced.
 */
export function interpolate(value: string, vars: Record<string, string | undefined>, used?: Set<string>): string {
  return value.replace(/\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_all, dollar, name1, op, arg, name2) => {
    if (dollar === '$') return '$';
    const name = (name1 ?? name2) as string;
    used?.add(name);
    const v = vars[name];
    const unset = v === undefined;
    const empty = unset || v === '';
    switch (op as string | undefined) {
      case ':-':
        return empty ? arg : v!;
      case '-':
        return unset ? arg : v!;
      case ':?':
      case '?':
        if (op === ':?' ? empty : unset) throw new MissingVariableError(`required variable ${name} is missing a value: ${arg}`);
        return v!;
      default:
        return v ?? '';
    }
  });
}

function interpolateDeep<T>(value: T, vars: Record<string, string | undefined>, used: Set<string>): T {
  if (typeof value === 'string') return interpolate(value, vars, used) as T;
  if (Array.isArray(value)) return value.map((v) => interpolateDeep(v, vars, used)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateDeep(v, vars, used)])) as T;
  }
  return value;
}

export interface ComposeHealthcheck {
  test: string[] | string;
  interval?: string;
  timeout?: string;
  retries?: number;
  start_period?: string;
}

export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile?: string } | string;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string>;
  env_file?: unknown;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: ComposeHealthcheck;
  init?: boolean;
  [key: string]: unknown;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** docker-compose.yml, YAML merge keys applied, `x-` extension fields dropped. */
export function rawCompose(): ComposeFile {
  const doc = parse(readRepoFile('docker-compose.yml'), { merge: true }) as Record<string, unknown>;
  for (const key of Object.keys(doc)) if (key.startsWith('x-')) delete doc[key];
  return doc as unknown as ComposeFile;
}

/** The values of deploy/forgebus.env.example. */
export function exampleEnv(): Record<string, string> {
  return parseEnvFile(readRepoFile('deploy/forgebus.env.example'));
}

/**
 * docker-compose.yml as `docker compose --env-file deploy/forgebus.env` would run it with the
 * example's values; `used` lists every variable it references.
 */
export function loadCompose(vars: Record<string, string> = exampleEnv()): { compose: ComposeFile; used: Set<string> } {
  const used = new Set<string>();
  const compose = interpolateDeep(rawCompose(), vars, used);
  return { compose, used };
}

export const nodeServiceNames = (compose: ComposeFile) => Object.keys(compose.services).filter((n) => /^node-\d+$/.test(n)).sort();
export const natsServiceNames = (compose: ComposeFile) => Object.keys(compose.services).filter((n) => /^nats-\d+$/.test(n)).sort();

/** A service's bind mounts: host path (relative to the repository) → container path, and the mode. */
export function bindMounts(service: ComposeService): { source: string; target: string; mode?: string }[] {
  return (service.volumes ?? [])
    .map((v) => v.split(':'))
    .filter(([source]) => source!.startsWith('.') || source!.startsWith('/') || source!.startsWith('~'))
    .map(([source, target, mode]) => ({ source: source!, target: target!, mode }));
}

/** The repository file a service mounts at `target` (a container path). */
export function mountedFile(service: ComposeService, target: string): string {
  const found = bindMounts(service).find((m) => m.target === target);
  if (!found) throw new Error(`no bind mount at ${target} (mounts: ${JSON.stringify(service.volumes)})`);
  return found.source.replace(/^\.\//, '');
}

/** The NATS configuration the nats services run, as read (environment references left as EnvRef). */
export function natsConf(): ConfMap {
  return parseNatsConf(readRepoFile('deploy/nats/nats-server.conf'));
}

export function hostPort(address: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`not host:port: ${address}`);
  return { host: m[1]!, port: Number(m[2]) };
}

// ---- nginx ------------------------------------------------------------------------------------

export interface NginxDirective {
  name: string;
  args: string[];
  block?: NginxDirective[];
}

/** nginx's configuration syntax: directives with arguments, `{}` blocks, quotes and comments. */
export function parseNginxConf(text: string): NginxDirective[] {
  const tokens: { t: string; quoted?: boolean }[] = [];
  const re = /\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"'#][^\s{};]*)/gy;
  for (let pos = 0; pos < text.length; ) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`nginx syntax not understood at: ${text.slice(pos, pos + 40)}`);
    pos = re.lastIndex;
    if (m[1] !== undefined || m[2] !== undefined) tokens.push({ t: (m[1] ?? m[2]!).replace(/\\(.)/g, '$1'), quoted: true });
    else if (m[3] !== undefined) tokens.push({ t: m[3] });
    else if (m[4] !== undefined) tokens.push({ t: m[4] });
  }
  let i = 0;
  const block = (nested: boolean): NginxDirective[] => {
    const out: NginxDirective[] = [];
    for (;;) {
      const tok = tokens[i];
      if (!tok) {
        if (nested) throw new Error('nginx: missing }');
        return out;
      }
      if (!tok.quoted && tok.t === '}') {
        if (!nested) throw new Error('nginx: unexpected }');
        i++;
        return out;
      }
      const name = tok.t;
      i++;
      const args: string[] = [];
      for (;;) {
        const a = tokens[i];
        if (!a) throw new Error(`nginx: directive ${name} not terminated`);
        i++;
        if (!a.quoted && a.t === ';') {
          out.push({ name, args });
          break;
        }
        if (!a.quoted && a.t === '{') {
          out.push({ name, args, block: block(true) });
          break;
        }
        args.push(a.t);
      }
    }
  };
  return block(false);
}

/** Every directive named `name` in a block (not nested). */
export const directives = (block: NginxDirective[], name: string) => block.filter((d) => d.name === name);
export function directive(block: NginxDirective[], name: string): NginxDirective {
  const found = directives(block, name);
  if (found.length !== 1) throw new Error(`expected one ${name} directive, found ${found.length}`);
  return found[0]!;
}

/** nginx sizes (`16m`, `300m`, `1g`, bytes) in bytes. */
export function nginxSize(value: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  if (!m) throw new Error(`not an nginx size: ${value}`);
  return Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]!;
}

/** nginx times (`300s`, `1h`, `4s`, `500ms`) in milliseconds. */
export function nginxTimeMs(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(value);
  if (!m) throw new Error(`not an nginx time: ${value}`);
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as Record<string, number>)[m[2] ?? 's']!;
}

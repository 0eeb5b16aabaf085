/**
 * Reads of a nats-server's HTTP monitoring endpoints (/varz, /healthz, /routez, /connz, /jsz with
 * streams and consumers), each with a timeout. Only the fields the status uses are typed.
 */

export interface Varz {
  server_id: string;
  server_name: string;
  version: string;
  uptime?: string;
  connections?: number;
  jetstream?: { config?: unknown; meta?: { leader?: string; replicas?: { name: string }[] } };
}

export interface Healthz {
  status: string;
  error?: string;
}

export interface Routez {
  routes?: { remote_id: string; remote_name?: string; ip?: string; port?: number }[];
}

export interface Connz {
  connections?: { name?: string; cid?: number }[];
}

export interface JszConsumer {
  name: string;
  num_pending?: number;
  num_ack_pending?: number;
  num_redelivered?: number;
  delivered?: { stream_seq?: number };
  ack_floor?: { stream_seq?: number };
}

export interface JszStream {
  name: string;
  cluster?: { leader?: string; replicas?: { name: string }[] };
  config?: { num_replicas?: number };
  state?: { messages?: number; bytes?: number; first_seq?: number; last_seq?: number };
  consumer_detail?: JszConsumer[];
}

export interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number };
  account_details?: { stream_detail?: JszStream[] }[];
}

/** What one monitoring URL answered; `error` when it could not be read at all. */
export interface MonitorSnapshot {
  url: string;
  varz?: Varz;
  healthz?: Healthz;
  routez?: Routez;
  connz?: Connz;
  jsz?: Jsz;
  /** Why the server's monitoring could not be read (its /varz did not answer). */
  error?: string;
  /** Endpoints other than /varz that failed (one line each). */
  problems: string[];
}

/** The monitoring port did not answer (refused, timed out, not a nats-server). */
export class MonitorUnreachableError extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(`NATS monitoring at ${url} did not answer: ${reason}`);
    this.name = 'MonitorUnreachableError';
  }
}

/** The cause of a failed fetch in words (Node's fetch says only "fetch failed"). */
export function fetchFailure(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'unknown host';
  if (code === 'ECONNRESET') return 'connection reset';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'host unreachable';
  return e?.cause?.message ?? e?.message ?? String(err);
}

/** The URL without a trailing slash and without credentials (it is printed). */
export function normalizeMonitorUrl(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString().replace(/\/+$/, '');
}

async function getJson<T>(base: string, path: string, timeoutMs: number, okStatuses: number[] = [200]): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  } catch (err) {
    throw new MonitorUnreachableError(base, fetchFailure(err, timeoutMs));
  }
  const text = await res.text().catch(() => '');
  if (!okStatuses.includes(res.status)) throw new MonitorUnreachableError(base, `${path} answered HTTP ${res.status}`);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new MonitorUnreachableError(base, `${path} did not answer JSON (is this a nats-server monitoring port?)`);
  }
}

/**
 * Reads every endpoint of one monitoring URL in parallel. Never throws: an unreachable server
 * is `error`; a single failing endpoint of a reachable one is in `problems`.
 */
export async function readMonitor(url: string, timeoutMs = 3_000): Promise<MonitorSnapshot> {
  const base = url.replace(/\/+$/, '');
  const snapshot: MonitorSnapshot = { url: base, problems: [] };
  const [varz, healthz, routez, connz, jsz] = await Promise.allSettled([
    getJson<Varz>(base, '/varz', timeoutMs),
    // /healthz answers 503 with {status: "unavailable", error} when the server is not healthy.
    getJson<Healthz>(base, '/healthz', timeoutMs, [200, 503]),
    getJson<Routez>(base, '/routez', timeoutMs),
    getJson<Connz>(base, '/connz?limit=4096', timeoutMs),
    getJson<Jsz>(base, '/jsz?streams=true&consumers=true', timeoutMs),
  ]);
  if (varz.status === 'rejected') {
    snapshot.error = (varz.reason as MonitorUnreachableError).reason ?? String(varz.reason);
    return snapshot;
  }
  snapshot.varz = varz.value;
  const keep = <T>(r: PromiseSettledResult<T>, endpoint: string): T | undefined => {
    if (r.status === 'fulfilled') return r.value;
    snapshot.problems.push(`${base}${endpoint}: ${(r.reason as MonitorUnreachableError).reason ?? String(r.reason)}`);
    return undefined;
  };
  snapshot.healthz = keep(healthz, '/healthz');
  snapshot.routez = keep(routez, '/routez');
  snapshot.connz = keep(connz, '/connz');
  snapshot.jsz = keep(jsz, '/jsz');
  return snapshot;
}

export function readMonitors(urls: string[], timeoutMs?: number): Promise<MonitorSnapshot[]> {
  return Promise.all(urls.map((u) => readMonitor(u, timeoutMs)));
}

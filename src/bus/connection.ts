import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import {
  connect,
  createInbox,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  type Status,
  type TlsOptions,
} from '@nats-io/transport-node';
import { ForgeBusConfigError } from './errors.js';
import { consoleLogger, type BusLogger } from './logger.js';
import { anyOf, arrayOf, boolean, fn, matching, millis, nested, nonEmptyString, type OptionRule, type OptionRules } from './options.js';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** Credentials: at most one of user/password, token or a creds file. */
export interface BusCredentials {
  user?: string;
  pass?: string;
  token?: string;
  /** Path to a NATS `.creds` file (JWT + NKey seed). */
  credsFile?: string;
}

export interface BusConnectionOptions extends BusCredentials {
  /** NATS server URLs: an array, or a comma-separated string as in `NATS_URL`. */
  servers?: string | string[];
  /** Connection name shown in the server's /connz page, e.g. `forge-node:node-1`. */
  name: string;
  /** First reconnect delay; doubles per attempt up to `maxReconnectDelayMs`. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Wait for the server if it is not up yet at start (default true). */
  waitOnFirstConnect?: boolean;
  /** Called for every connection status change (disconnect, reconnect, errors …). */
  onStatus?: (status: Status) => void;
  /**
   * Subject prefix of this connection's reply inboxes (default `_INBOX`), for NATS users that may
   * subscribe only to their own (the operator user of the generated configuration: `_INBOX_OPS`).
   */
  inboxPrefix?: string;
  /**
   * TLS to the NATS servers, by PEM file paths (read by nats.js at every connection attempt, so
   * renewed files are picked up on reconnect). Giving `tls` at all makes the client refuse servers
   * without TLS; `{}` verifies the server against the system's CAs.
   */
  tls?: {
    /** CA certificate(s) to verify the server's certificate with (a private CA). */
    caFile?: string;
    /** Client certificate, for servers that verify clients (`verify: true`); needs `keyFile`. */
    certFile?: string;
    /** Private key of `certFile`; the two go together. */
    keyFile?: string;
  };
}

const text: OptionRule = (value) => (typeof value === 'string' ? undefined : 'a string');

type BusTlsOptions = NonNullable<BusConnectionOptions['tls']>;

const TLS_OPTION_RULES: OptionRules<BusTlsOptions> = {
  caFile: nonEmptyString,
  certFile: nonEmptyString,
  keyFile: nonEmptyString,
};

export const CONNECTION_OPTION_RULES: OptionRules<BusConnectionOptions> = {
  servers: anyOf(nonEmptyString, arrayOf(nonEmptyString, 'an array of server URLs')),
  name: nonEmptyString,
  reconnectDelayMs: millis(1),
  maxReconnectDelayMs: millis(1),
  waitOnFirstConnect: boolean,
  onStatus: fn,
  user: nonEmptyString,
  pass: text,
  token: nonEmptyString,
  credsFile: nonEmptyString,
  tls: nested(TLS_OPTION_RULES),
  inboxPrefix: matching(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/, 'a subject prefix without wildcards, e.g. _INBOX_OPS'),
};

/**
 * A new reply inbox under the connection's inbox prefix (`inboxPrefix`), as nats.js's own
 * requests use: a user allowed only its own inboxes would be refused a subscription elsewhere.
 */
export function inboxFor(nc: NatsConnection): string {
  return createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
}

/** Splits `NATS_URL`-style input (comma-separated, whitespace tolerated) into server URLs. */
export function parseServers(servers: string | string[] | undefined): string[] {
  const list = (Array.isArray(servers) ? servers : (servers ?? '').split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return list.length > 0 ? list : [DEFAULT_NATS_URL];
}

/**
 * Reconnect delay that grows with the length of the outage: short blips reconnect at once,
 * long outages are polled at most every `maxMs`. It depends on time, not on a call count,
 * because nats.js asks for a delay more than once per reconnect cycle.
 */
export function reconnectBackoff(initialMs: number, maxMs: number): { next: () => number; reset: () => void } {
  let outageStart: number | undefined;
  return {
    next: () => {
      const now = Date.now();
      outageStart ??= now;
      const base = Math.min(maxMs, Math.max(initialMs, (now - outageStart) / 4));
      return Math.round(base / 2 + Math.random() * (base / 2));
    },
    reset: () => {
      outageStart = undefined;
    },
  };
}

function authOptions(credentials: BusCredentials): Partial<NodeConnectionOptions> {
  const kinds = [credentials.user !== undefined || credentials.pass !== undefined, credentials.token !== undefined, credentials.credsFile !== undefined];
  if (kinds.filter(Boolean).length > 1) {
    throw new ForgeBusConfigError('give NATS credentials one way only: user/pass, token, or credsFile');
  }
  if (credentials.credsFile !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(credentials.credsFile);
    } catch (err) {
      throw new ForgeBusConfigError(`cannot read NATS creds file ${credentials.credsFile}: ${(err as Error).message}`);
    }
    return { authenticator: credsAuthenticator(creds) };
  }
  if (credentials.token !== undefined) return { token: credentials.token };
  if (credentials.user !== undefined) return { user: credentials.user, pass: credentials.pass ?? '' };
  return {};
}

/** The environment variable the forge node reads each TLS file from (for the error messages). */
const TLS_ENV: Record<keyof BusTlsOptions, string> = { caFile: 'NATS_TLS_CA', certFile: 'NATS_TLS_CERT', keyFile: 'NATS_TLS_KEY' };

/**
 * Checks the TLS files before connecting: nats.js reads them only when it dials, and a missing
 * file there is a connection error retried forever instead of a configuration error at start.
 * The paths themselves are handed on, so nats.js re-reads renewed files on reconnect.
 */
function tlsOptions(tls: BusConnectionOptions['tls'], servers: string[]): Partial<NodeConnectionOptions> {
  if (tls === undefined) return {};
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    const [given, missing] = tls.certFile !== undefined ? ['certFile', 'keyFile'] : ['keyFile', 'certFile'];
    throw new ForgeBusConfigError(
      `NATS TLS option tls.${given} is given without tls.${missing}: a client certificate needs both the certificate (tls.certFile) ` +
        `and its private key (tls.keyFile); give both, or neither when the server does not verify clients`,
    );
  }
  const files: { caFile?: string; certFile?: string; keyFile?: string } = {};
  for (const key of ['caFile', 'certFile', 'keyFile'] as const) {
    const path = tls[key];
    if (path === undefined) continue;
    let size: number;
    try {
      size = readFileSync(path).length;
    } catch (err) {
      // fs says e.g. "ENOENT: no such file or directory, open '<path>'": the path is named below.
      const reason = (err as Error).message.replace(/, \w+ '.*'$/s, '');
      throw new ForgeBusConfigError(
        `cannot read the NATS TLS file tls.${key} "${path}" (${reason}): give the path of a PEM file this process may read ` +
          `(for a forge node: ${TLS_ENV[key]}), or leave the option out`,
      );
    }
    if (size === 0) {
      throw new ForgeBusConfigError(`the NATS TLS file tls.${key} "${path}" is empty: give the path of a PEM file (for a forge node: ${TLS_ENV[key]})`);
    }
    files[key] = path;
  }
  const serverIdentity = ipServerIdentityCheck(servers);
  // nats.js hands every key of `tls` on to Node's tls.connect; its type lists only its own.
  return { tls: (serverIdentity ? { ...files, checkServerIdentity: serverIdentity } : files) as TlsOptions };
}

/**
 * nats.js gives Node no TLS server name for a server addressed by IP (nats-io/nats.js#303), so
 * Node checks the certificate against "localhost" and refuses a certificate made for the IP
 * address (subjectAltName IP:…). This check accepts, in that case only, a certificate valid for
 * one of the configured IP addresses (the CA check is untouched). Servers given by host name keep
 * Node's own check.
 */
function ipServerIdentityCheck(servers: string[]): ((host: string, cert: PeerCertificate) => Error | undefined) | undefined {
  const ips = servers.flatMap((server) => {
    try {
      const host = new URL(server.includes('://') ? server : `nats://${server}`).hostname.replace(/^\[(.*)\]$/, '$1');
      return isIP(host) ? [host] : [];
    } catch {
      return [];
    }
  });
  if (ips.length === 0) return undefined;
  return (host, cert) => {
    const error = checkServerIdentity(host, cert);
    if (error === undefined || host !== 'localhost') return error;
    return ips.some((ip) => checkServerIdentity(ip, cert) === undefined) ? undefined : error;
  };
}

/**
 * Forwards every status change for the life of the connection. A throwing listener must not end
 * the loop: whoever tracks "connected" (the bus, the cache's trust state) would freeze in its
 * last state. If the iterator itself ends while the connection is open, that is said, not hidden.
 */
async function watchStatus(nc: NatsConnection, onStatus: (status: Status) => void, logger: BusLogger): Promise<void> {
  try {
    for await (const status of nc.status()) {
      try {
        onStatus(status);
      } catch (err) {
        logger.error(`a NATS connection status listener threw on "${status.type}" (ignored): ${(err as Error).message}`);
      }
    }
  } catch (err) {
    logger.error(`NATS connection status stream failed: ${(err as Error).message}`);
  }
  if (!nc.isClosed()) logger.error('NATS connection status stream ended while the connection is open: status changes are no longer tracked');
}

/**
 * Opens the one NATS connection a forgebus process uses: named, to every configured server,
 * reconnecting forever with backoff, status changes forwarded to `onStatus`.
 */
export async function connectBus(options: BusConnectionOptions, logger: BusLogger = consoleLogger): Promise<NatsConnection> {
  if (!options.name) throw new ForgeBusConfigError('a connection name is required (e.g. forge-node:<nodeId>)');
  const servers = parseServers(options.servers);
  const tls = tlsOptions(options.tls, servers);
  const backoff = reconnectBackoff(options.reconnectDelayMs ?? 250, options.maxReconnectDelayMs ?? 5_000);
  const nc = await connect({
    servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectDelayHandler: backoff.next,
    waitOnFirstConnect: options.waitOnFirstConnect ?? true,
    // nats.js drops what was published while disconnected when it reconnects; EventPublisher
    // re-sends its unacknowledged events on reconnect (and on ack timeout).
    reconnectTimeWait: options.reconnectDelayMs ?? 250,
    ...authOptions(options),
    ...tls,
    ...(options.inboxPrefix !== undefined && { inboxPrefix: options.inboxPrefix }),
  });
  void watchStatus(nc, (status) => {
    if (status.type === 'reconnect') backoff.reset();
    options.onStatus?.(status);
  }, logger);
  return nc;
}

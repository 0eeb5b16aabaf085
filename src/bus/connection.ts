import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  type Status,
} from '@nats-io/transport-node';
import { ForgeBusConfigError } from './errors.js';
import { consoleLogger, type BusLogger } from './logger.js';
import { anyOf, arrayOf, boolean, fn, millis, nonEmptyString, type OptionRule, type OptionRules } from './options.js';

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
}

const text: OptionRule = (value) => (typeof value === 'string' ? undefined : 'a string');

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
};

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
  const backoff = reconnectBackoff(options.reconnectDelayMs ?? 250, options.maxReconnectDelayMs ?? 5_000);
  const nc = await connect({
    servers: parseServers(options.servers),
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectDelayHandler: backoff.next,
    waitOnFirstConnect: options.waitOnFirstConnect ?? true,
    // nats.js drops what was published while disconnected when it reconnects; EventPublisher
    // re-sends its unacknowledged events on reconnect (and on ack timeout).
    reconnectTimeWait: options.reconnectDelayMs ?? 250,
    ...authOptions(options),
  });
  void watchStatus(nc, (status) => {
    if (status.type === 'reconnect') backoff.reset();
    options.onStatus?.(status);
  }, logger);
  return nc;
}

import { DEFAULT_NATS_URL, type BusConnectionOptions } from '../bus/index.js';

/**
 * How the forge node and the operators' tools reach NATS, from the environment:
 * NATS_URL (comma-separated), one of NATS_USER + NATS_PASSWORD, NATS_TOKEN or NATS_CREDS, and
 * NATS_TLS_CA / NATS_TLS_CERT / NATS_TLS_KEY. See docs/operations.md "Credentials" and "TLS".
 */
export type NatsClientSettings = Pick<BusConnectionOptions, 'servers' | 'user' | 'pass' | 'token' | 'credsFile' | 'tls'> & { servers: string };

export class NatsEnvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NatsEnvError';
  }
}

export function natsClientFromEnv(env: Record<string, unknown> = process.env): NatsClientSettings {
  const str = (key: string) => (typeof env[key] === 'string' && (env[key] as string).trim() !== '' ? (env[key] as string).trim() : undefined);
  const settings: NatsClientSettings = { servers: str('NATS_URL') ?? DEFAULT_NATS_URL };
  const user = str('NATS_USER');
  const pass = typeof env.NATS_PASSWORD === 'string' ? env.NATS_PASSWORD : undefined;
  const token = str('NATS_TOKEN');
  const creds = str('NATS_CREDS');
  const given = [user !== undefined || pass !== undefined ? 'NATS_USER/NATS_PASSWORD' : undefined, token && 'NATS_TOKEN', creds && 'NATS_CREDS'].filter(Boolean);
  if (given.length > 1) throw new NatsEnvError(`NATS credentials are given more than one way (${given.join(', ')}): set only one of NATS_USER + NATS_PASSWORD, NATS_TOKEN or NATS_CREDS`);
  if (pass !== undefined && user === undefined) throw new NatsEnvError('NATS_PASSWORD is set without NATS_USER: set both');
  if (user !== undefined) Object.assign(settings, { user, pass: pass ?? '' });
  if (token) settings.token = token;
  if (creds) settings.credsFile = creds;
  const [caFile, certFile, keyFile] = [str('NATS_TLS_CA'), str('NATS_TLS_CERT'), str('NATS_TLS_KEY')];
  if ((certFile === undefined) !== (keyFile === undefined)) throw new NatsEnvError('NATS_TLS_CERT and NATS_TLS_KEY go together: set both (a client certificate and its key) or neither');
  if (caFile || certFile) settings.tls = { ...(caFile && { caFile }), ...(certFile && { certFile, keyFile }) };
  return settings;
}

/** The servers with any `user:password@` removed, for printing. */
export function redactServers(servers: string): string {
  return servers.replace(/\/\/[^@/]*@/g, '//');
}

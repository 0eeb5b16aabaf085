import { redactServers } from '../nats-env.js';

/** Why `forgebus status` could not show the cluster: `code` for programs, `message` one line for people. */
export type StatusErrorCode = 'NATS_UNREACHABLE' | 'NATS_CREDENTIALS_REFUSED' | 'NATS_PERMISSION_DENIED' | 'MONITOR_UNREACHABLE' | 'INVALID_SETTINGS';

export class StatusError extends Error {
  constructor(
    readonly code: StatusErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message.replace(/\s*\n\s*/g, ' '), options);
    this.name = 'StatusError';
  }
}

/** A failed NATS connect in one line, without the servers' credentials. */
export function natsConnectError(err: unknown, servers: string, user?: string): StatusError {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  const where = redactServers(servers);
  const text = `${e?.message ?? String(err)}`.split('\n')[0]!;
  if (e?.name === 'AuthorizationError' || /authoriz|authentication|user authentication expired|permissions? violation/i.test(text)) {
    const who = user !== undefined ? ` (user "${user}")` : '';
    return new StatusError('NATS_CREDENTIALS_REFUSED', `NATS at ${where} refused the credentials${who}: ${text}`, { cause: err });
  }
  let reason = text;
  if (e?.cause?.code === 'ECONNREFUSED' || /connection refused/i.test(text)) reason = 'connection refused';
  else if (e?.code === 'ENOTFOUND' || /ENOTFOUND|EAI_AGAIN/.test(text)) reason = `unknown host (${text})`;
  else if (/timeout/i.test(text)) reason = `no answer (${text})`;
  return new StatusError('NATS_UNREACHABLE', `cannot reach NATS at ${where}: ${reason}`, { cause: err });
}

/**
 * NATS refused what every JetStream read needs (the reply inbox, or the JetStream API itself):
 * nothing of the cluster can be read as this user. Undefined for any other failure (a JetStream
 * without a leader is a status to show, not an error).
 */
export function natsPermissionError(err: unknown): StatusError | undefined {
  const text = `${(err as Error)?.message ?? String(err)}`.split('\n')[0]!;
  const inbox = /Permissions Violation for Subscription to "([^".]+)\./i.exec(text);
  if (inbox) {
    return new StatusError(
      'NATS_PERMISSION_DENIED',
      `NATS does not let this user subscribe to its reply inboxes (${inbox[1]}.>): give the prefix it may use with --inbox-prefix or NATS_INBOX_PREFIX (npm start's operator user: _INBOX_OPS)`,
      { cause: err },
    );
  }
  if (/Permissions Violation/i.test(text)) return new StatusError('NATS_PERMISSION_DENIED', `NATS refused this user the JetStream API: ${text}`, { cause: err });
  return undefined;
}

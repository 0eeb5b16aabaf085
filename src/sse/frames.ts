/**
 * The SSE wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html). Frames
 * are built once as Buffers and written to every client as they are: no per-client encoding.
 * Event types are checked by the catalog (no line breaks), and JSON.stringify escapes CR and LF,
 * so `data:` is always a single line.
 */

export function eventFrame(seq: number, type: string, json: string): Buffer {
  return Buffer.from(`id: ${seq}\nevent: ${type}\ndata: ${json}\n\n`);
}

/** A forgebus control event (`reset`, `access-revoked`); with `id` it also moves the client's position. */
export function controlFrame(type: string, data: object, id?: number): Buffer {
  return Buffer.from(`${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * First bytes of every stream: the reconnect delay, and the position the client starts from.
 * A frame with `id:` and no `data:` dispatches nothing but sets the EventSource's lastEventId,
 * so a client that drops before its first event still resumes from where it connected.
 */
export function preambleFrame(retryMs: number, id?: number): Buffer {
  return Buffer.from(`retry: ${retryMs}\n${id === undefined ? '' : `id: ${id}\n`}\n`);
}

/** A comment line: keeps proxies and load balancers from closing an idle stream. */
export const HEARTBEAT_FRAME = Buffer.from(':\n\n');

/** Sent just before a node closes its streams on shutdown: reconnect (elsewhere) quickly. */
export const SHUTDOWN_RETRY_MS = 250;

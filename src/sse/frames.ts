/**
 * The SSE wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html). Frames
 * are built once and written to every client as they are: no per-client encoding. Event types
 * are checked by the catalog (no line breaks), and JSON.stringify escapes CR and LF, so `data:`
 * is always a single line.
 */

const CRLF = Buffer.from('\r\n');

/**
 * One frame, ready for the socket. The hub writes to the socket itself (Node's response write
 * path costs more than the write), so a chunked response needs the frame as an HTTP/1.1 chunk:
 * built on first use and shared by every client.
 */
export class WireFrame {
  private chunk?: Buffer;

  constructor(readonly body: Buffer) {}

  chunked(): Buffer {
    return (this.chunk ??= Buffer.concat([Buffer.from(`${this.body.length.toString(16)}\r\n`), this.body, CRLF]));
  }
}

/**
 * The SSE id of stream position `seq`: the plain sequence on the stream the cluster first saw
 * (epoch ''), `<seq>-<epoch>` on a re-created one, whose numbers start over. Plain numbers sent by
 * existing clients keep their meaning.
 */
export function eventId(seq: number, epoch: string): string {
  return epoch === '' ? String(seq) : `${seq}-${epoch}`;
}

export function eventFrame(id: string, type: string, json: string): WireFrame {
  return new WireFrame(Buffer.from(`id: ${id}\nevent: ${type}\ndata: ${json}\n\n`));
}

/** A forgebus control event (`reset`, `access-revoked`); with `id` it also moves the client's position. */
export function controlFrame(type: string, data: object, id?: string): WireFrame {
  return new WireFrame(Buffer.from(`${id === undefined ? '' : `id: ${id}\n`}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`));
}

/**
 * First frame of a fresh stream: the reconnect delay and a `position` event whose id is where
 * the stream starts, so a client that drops before its first real event still resumes from
 * there. (A frame with an id and no data would do for browsers, but not for every client: the
 * `eventsource` package only takes ids from dispatched events.) A resuming stream gets only the
 * reconnect delay: its position is its own Last-Event-ID.
 */
export function preambleFrame(retryMs: number, position?: { seq: number; id: string }): WireFrame {
  if (position === undefined) return new WireFrame(Buffer.from(`retry: ${retryMs}\n\n`));
  return new WireFrame(Buffer.from(`retry: ${retryMs}\nid: ${position.id}\nevent: position\ndata: {"position":${position.seq}}\n\n`));
}

/**
 * A stream this node turns away (shutting down, full, not started): a 200 that ends at once
 * with a reconnect delay, because an EventSource treats any other status as final and would
 * never try another node. The comment says why, for clients that are not browsers.
 */
export function turnAwayFrame(retryMs: number, reason: string): Buffer {
  return Buffer.from(`: ${reason.replace(/[\r\n]+/g, ' ')}\nretry: ${retryMs}\n\n`);
}

/** A comment line: keeps proxies and load balancers from closing an idle stream. */
export const HEARTBEAT_FRAME = new WireFrame(Buffer.from(':\n\n'));

/** Sent just before a node closes its streams on shutdown: reconnect (elsewhere) quickly. */
export const SHUTDOWN_RETRY_MS = 250;

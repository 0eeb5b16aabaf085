import { connect as tcpConnect, type Socket } from 'node:net';
import { EventSource, type ErrorEvent, type EventSourceFetchInit, type FetchLikeResponse } from 'eventsource';
import { eventually } from './nats.js';

/**
 * SSE clients for the tests of GET /api/events.
 *
 * - `lbEventSource`: the `eventsource` package (a WHATWG EventSource) behind a simulated load
 *   balancer: its custom `fetch` adds the Authorization header and picks the node for every
 *   (re)connect, so when a node dies the EventSource's own reconnect (with its own Last-Event-ID
 *   header) lands on another node.
 * - `RawSseStream`: fetch + a small spec parser that keeps every field, including what an
 *   EventSource hides (`retry:`, id-only frames, comment lines), plus status and headers.
 * - `RawHttpStream`: a plain TCP socket speaking HTTP/1.1, for a client that stops reading.
 */

/** One dispatched SSE event as a client sees it. */
export interface SseEvent {
  id: string;
  type: string;
  data: string;
}

/** Every event type the forge node can put on a stream (catalog + control events). */
export const FORGE_SSE_TYPES = [
  'repo.created',
  'repo.deleted',
  'repo.renamed',
  'repo.transferred',
  'repo.pushed',
  'repo.collaborator_changed',
  'ref.created',
  'ref.deleted',
  'issue.created',
  'issue.updated',
  'issue.status_changed',
  'issue.deleted',
  'comment.created',
  'comment.updated',
  'comment.deleted',
  'pull_request.opened',
  'pull_request.merged',
  'pull_request.closed',
  'user.notification_count',
  'user.stopwatch_changed',
  'user.logged_out',
  'reset',
  'access-revoked',
  'message',
] as const;

/** One (re)connect attempt of an lbEventSource, as the load balancer saw it. */
export interface LbConnection {
  /** 1 for the first connect, then 2, 3 … for the EventSource's reconnects. */
  attempt: number;
  /** Node base URL the request went to (undefined when no node took it). */
  node?: string;
  /** Last-Event-ID header the EventSource sent (undefined on a fresh connect). */
  lastEventId?: string;
  /** Events this client had received when the EventSource started the attempt. */
  receivedBefore: number;
  status?: number;
  error?: string;
}

export interface LbEventSourceOptions {
  /** Path and query on the node, e.g. `/api/events?repos=alice/web`. */
  path: string;
  /** Sent as `Authorization: Bearer <token>` on every (re)connect. */
  token?: string;
  /**
   * Node base URLs in the load balancer's order of preference, asked on every (re)connect. A node
   * that refuses the connection is skipped (what a load balancer does with a dead backend).
   */
  nodes: () => string[];
  /** Event types to listen to (named SSE events need one listener each). Default: all. */
  types?: readonly string[];
  /**
   * Awaited before each reconnect (not the first connect): a load balancer that has not yet
   * noticed a dead backend, or any other hold a test needs.
   */
  beforeReconnect?: (attempt: number) => Promise<void> | void;
}

export interface LbEventSource {
  readonly es: EventSource;
  readonly events: SseEvent[];
  readonly connections: LbConnection[];
  readonly errors: { code?: number; message?: string }[];
  /** Number of `open` events (one per successful connect). */
  readonly opens: number;
  /** Resolves at the first `open`; rejects when the first connect fails for good. */
  readonly opened: Promise<void>;
  /** Events of the given types, in arrival order. */
  ofType(...types: string[]): SseEvent[];
  /** Waits until at least `n` events arrived. */
  waitForCount(n: number, timeoutMs?: number, what?: string): Promise<void>;
  close(): void;
}

/** Rewrites the EventSource's request onto one node, with the token; tries the next node on connection errors. */
function loadBalancedFetch(options: LbEventSourceOptions, state: { attempt: number; connections: LbConnection[]; events: SseEvent[] }) {
  return async (input: string | URL, init: EventSourceFetchInit): Promise<FetchLikeResponse> => {
    const attempt = ++state.attempt;
    const headers: Record<string, string> = { ...init.headers };
    if (options.token) headers.Authorization = `Bearer ${options.token}`;
    const connection: LbConnection = { attempt, lastEventId: headers['Last-Event-ID'], receivedBefore: state.events.length };
    state.connections.push(connection);
    if (attempt > 1) await options.beforeReconnect?.(attempt);
    const target = new URL(typeof input === 'string' ? input : input.href);
    let lastError: unknown;
    for (const node of options.nodes()) {
      const url = new URL(target.pathname + target.search, node);
      try {
        const res = await fetch(url, { ...init, headers });
        connection.node = node;
        connection.status = res.status;
        return res;
      } catch (err) {
        if ((init.signal as AbortSignal | undefined)?.aborted) throw err;
        lastError = err;
        // A refused or reset connection: this backend is down, try the next one.
      }
    }
    connection.error = String((lastError as { cause?: unknown })?.cause ?? lastError);
    throw lastError ?? new Error('no node to connect to');
  };
}

/**
 * An `eventsource` EventSource whose requests go through a simulated load balancer. Events of
 * every type in `types` are collected as {id, type, data}; `id` is the EventSource's
 * `lastEventId` for that event ('' when the frame had no id).
 */
export function lbEventSource(options: LbEventSourceOptions): LbEventSource {
  const events: SseEvent[] = [];
  const connections: LbConnection[] = [];
  const errors: { code?: number; message?: string }[] = [];
  const state = { attempt: 0, connections, events };
  // The URL only carries the path: the load balancer's fetch chooses the origin.
  const es = new EventSource(new URL(options.path, 'http://load-balancer.invalid'), { fetch: loadBalancedFetch(options, state) });
  let opens = 0;
  let settle!: { resolve: () => void; reject: (e: Error) => void };
  const opened = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  opened.catch(() => undefined);
  es.addEventListener('open', () => {
    opens++;
    settle.resolve();
  });
  es.addEventListener('error', (e) => {
    const err = e as ErrorEvent;
    errors.push({ code: err.code, message: err.message });
    if (es.readyState === es.CLOSED) settle.reject(new Error(`EventSource failed: ${err.code ?? ''} ${err.message ?? ''}`));
  });
  for (const type of options.types ?? FORGE_SSE_TYPES) {
    es.addEventListener(type, (e) => {
      const m = e as MessageEvent;
      events.push({ id: m.lastEventId, type: m.type, data: m.data as string });
    });
  }
  return {
    es,
    events,
    connections,
    errors,
    get opens() {
      return opens;
    },
    opened,
    ofType: (...types) => events.filter((e) => types.includes(e.type)),
    waitForCount: (n, timeoutMs = 10_000, what = `${n} events`) => eventually(() => events.length >= n, timeoutMs, what).then(() => undefined),
    close: () => es.close(),
  };
}

// ---- raw client -------------------------------------------------------------------------------

/** One block of an SSE stream (up to a blank line), every field kept. */
export interface RawFrame {
  id?: string;
  event?: string;
  /** Data lines joined with \n; undefined when the block had no data line. */
  data?: string;
  retry?: string;
  /** Comment lines (without the leading colon). */
  comments: string[];
}

/** Parses SSE text into blocks; returns the blocks and the unterminated rest. */
export function parseSseBlocks(text: string): { frames: RawFrame[]; rest: string } {
  const frames: RawFrame[] = [];
  let current: RawFrame = { comments: [] };
  let touched = false;
  let start = 0;
  let consumed = 0;
  for (;;) {
    const lf = text.indexOf('\n', start);
    if (lf === -1) break;
    let line = text.slice(start, lf);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    start = lf + 1;
    if (line === '') {
      if (touched) frames.push(current);
      current = { comments: [] };
      touched = false;
      consumed = start;
      continue;
    }
    touched = true;
    if (line.startsWith(':')) {
      current.comments.push(line.slice(1).replace(/^ /, ''));
      continue;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') current.data = current.data === undefined ? value : `${current.data}\n${value}`;
    else if (field === 'id') current.id = value;
    else if (field === 'event') current.event = value;
    else if (field === 'retry') current.retry = value;
  }
  // A half-received block stays in the rest, so it is parsed whole next time.
  return { frames, rest: text.slice(consumed) };
}

/**
 * A stream read with fetch and parsed by `parseSseBlocks`: status, headers, every block, and
 * how the stream ended. Non-200 answers are read whole into `body`.
 */
export class RawSseStream {
  readonly frames: RawFrame[] = [];
  /** Resolves when the body ended ('end') or failed ('error'). */
  readonly ended: Promise<'end' | 'error'>;
  endedAt?: number;
  body?: string;
  private readonly controller: AbortController;

  /** Bytes of body received. */
  bytes = 0;

  private constructor(
    readonly status: number,
    readonly headers: Headers,
    res: Response,
    controller: AbortController,
    private readonly summarize?: (frame: RawFrame) => RawFrame,
  ) {
    this.controller = controller;
    this.ended = this.pump(res);
  }

  /**
   * GET `url` as an event stream. `summarize` replaces each frame before it is kept (for
   * streams too big to hold: keep a digest of the data instead).
   */
  static async open(url: string, headers: Record<string, string> = {}, options: { summarize?: (frame: RawFrame) => RawFrame } = {}): Promise<RawSseStream> {
    const controller = new AbortController();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
    const stream = new RawSseStream(res.status, res.headers, res, controller, options.summarize);
    if (res.status !== 200) await stream.ended;
    return stream;
  }

  private async pump(res: Response): Promise<'end' | 'error'> {
    if (res.status !== 200) {
      this.body = await res.text();
      return 'end';
    }
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        this.bytes += chunk.length;
        const text = decoder.decode(chunk, { stream: true });
        const mayEndBlock = text.includes('\n\n') || (text.startsWith('\n') && pending.endsWith('\n'));
        pending += text;
        // Big frames arrive in many chunks: parse only once a block can have ended.
        if (!mayEndBlock) continue;
        const { frames, rest } = parseSseBlocks(pending);
        for (const frame of frames) this.frames.push(this.summarize ? this.summarize(frame) : frame);
        pending = rest;
      }
      return 'end';
    } catch {
      return 'error';
    } finally {
      this.endedAt = performance.now();
    }
  }

  /** Blocks that dispatch an event (have data), as {id, type, data}; the opening `position` left out. */
  get events(): SseEvent[] {
    return this.frames.filter((f) => f.data !== undefined && f.event !== 'position').map((f) => ({ id: f.id ?? '', type: f.event ?? 'message', data: f.data! }));
  }

  /** The JSON body of a non-200 answer. */
  json(): any {
    return this.body ? JSON.parse(this.body) : undefined;
  }

  waitFor(check: (s: RawSseStream) => boolean, timeoutMs = 10_000, what = 'stream condition'): Promise<void> {
    return eventually(() => check(this), timeoutMs, what).then(() => undefined);
  }

  close(): void {
    this.controller.abort();
  }
}

// ---- raw TCP ----------------------------------------------------------------------------------

/**
 * GET over a bare TCP socket: the test decides when (and whether) to read. Resolves once the
 * response head arrived; `socket` is then paused if `pauseAfterHead` is set.
 */
export class RawHttpStream {
  head = '';
  status = 0;
  /** Bytes read after the head (only while reading). */
  bodyBytes = 0;
  closed = false;
  closedAt?: number;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        this.closedAt = performance.now();
        resolve();
      }),
    );
    socket.on('error', () => undefined);
  }

  /** Body bytes as received (chunked transfer encoding included). */
  readonly body: Buffer[] = [];

  /** Starts (or resumes) reading: everything read is kept in `body`. */
  read(): void {
    if (this.reading) return;
    this.reading = true;
    this.socket.on('data', (c: Buffer) => {
      this.bodyBytes += c.length;
      this.body.push(c);
    });
    this.socket.resume();
  }

  private reading = false;

  /** The body with the chunked transfer encoding removed, up to the last complete chunk. */
  dechunked(): Buffer {
    const raw = Buffer.concat(this.body);
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = raw.indexOf('\r\n', at);
      if (eol === -1) break;
      const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
      if (!Number.isFinite(size) || size === 0 || eol + 2 + size + 2 > raw.length) break;
      parts.push(raw.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    return Buffer.concat(parts);
  }

  static async get(baseUrl: string, path: string, headers: Record<string, string>, options: { pauseAfterHead?: boolean } = {}): Promise<RawHttpStream> {
    const { hostname, port } = new URL(baseUrl);
    const socket = tcpConnect({ host: hostname, port: Number(port) });
    const stream = new RawHttpStream(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Accept: text/event-stream', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    await new Promise<void>((resolve, reject) => {
      let buffer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        const end = buffer.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        if (options.pauseAfterHead) socket.pause();
        stream.head = buffer.subarray(0, end).toString('latin1');
        stream.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(stream.head)?.[1] ?? 0);
        const rest = buffer.subarray(end + 4);
        stream.bodyBytes = rest.length;
        if (rest.length > 0) stream.body.push(rest);
        if (!options.pauseAfterHead) stream.read();
        resolve();
      };
      const onClose = () => reject(new Error(`connection closed before the response head: ${buffer.toString('latin1').slice(0, 200)}`));
      socket.on('data', onData);
      socket.once('close', onClose);
    });
    return stream;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

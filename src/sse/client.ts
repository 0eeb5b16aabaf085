import type { WireFrame } from './frames.js';
import type { TopicKey } from './topics.js';

/** The socket under a response, as the hub writes to it. */
export interface SseSocket {
  cork(): void;
  uncork(): void;
  write(chunk: Buffer): boolean;
  readonly writableLength: number;
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
}

/** What the hub needs of a response: Node's http.ServerResponse has all of it. */
export interface SseResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  flushHeaders(): void;
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly destroyed: boolean;
  /** Set by writeHead: the body goes out as HTTP/1.1 chunks (every HTTP/1.1 client). */
  readonly chunkedEncoding: boolean;
  readonly socket: SseSocket | null;
  once(event: 'close', listener: () => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
}

/** A live frame waiting behind a client's replay (seq undefined: a control frame without id). */
export interface HeldFrame {
  seq: number | undefined;
  frame: WireFrame;
}

/**
 * One open stream. Kept small: at tens of thousands of connections per node, every field
 * counts. All behaviour lives in the hub.
 */
export class SseClient {
  /** Topics the client receives now (its user, the site, the repositories it may read). */
  readonly topics = new Set<TopicKey>();
  /** Highest stream sequence written (or known to the client): nothing at or below is sent again. */
  lastSentSeq: number;
  /** Set while a replay runs: live events wait here, in order. */
  held: HeldFrame[] | undefined;
  /** The socket is corked until the end of this tick (writes batched into one syscall). */
  corked = false;
  /** Bytes written in this tick: a backlog no bigger than that is one large event, not a slow reader. */
  tickBytes = 0;
  /** Something was written since the last heartbeat: no heartbeat needed. */
  wrote = false;
  closed = false;
  /** Frames go out as HTTP/1.1 chunks (set from the response once its headers are out). */
  chunked = false;

  constructor(
    readonly user: string,
    readonly res: SseResponse,
    /** Repository topics the client asked for by name; undefined = its default set, which follows grants. */
    readonly requested: ReadonlySet<TopicKey> | undefined,
    lastSentSeq: number,
  ) {
    this.lastSentSeq = lastSentSeq;
  }
}

import type { TopicKey } from './topics.js';

/** What the hub needs of a response: Node's http.ServerResponse has all of it. */
export interface SseResponse {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly socket: { cork(): void; uncork(): void } | null;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  removeListener(event: 'close' | 'drain', listener: () => void): unknown;
}

/** A live frame waiting behind a client's replay (seq undefined: a control frame without id). */
export interface HeldFrame {
  seq: number | undefined;
  frame: Buffer;
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
  closed = false;

  constructor(
    readonly id: number,
    readonly user: string,
    readonly res: SseResponse,
    /** Repository topics the client asked for by name; undefined = its default set, which follows grants. */
    readonly requested: ReadonlySet<TopicKey> | undefined,
    lastSentSeq: number,
  ) {
    this.lastSentSeq = lastSentSeq;
  }
}

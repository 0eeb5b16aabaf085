import { type KV, type KvEntry } from '@nats-io/kv';
import {
  checkOptions,
  consoleLogger,
  ForgeBusError,
  integer,
  logger,
  RateLimitedLog,
  type BusLogger,
  type ForgeBus,
  type OptionRules,
  openBucket,
} from '../bus/index.js';

/** KV bucket of the cluster's locks: one key per lock. */
export const LOCKS_BUCKET = 'FORGE_LOCKS';

/** What the holder of a lock gets. */
export interface LockGrant {
  key: string;
  /**
   * The fencing token: grows with every grant of this key, cluster-wide (a KV revision). A
   * resource protected by the lock keeps the highest token it has seen and refuses writes that
   * carry a lower one: a holder that lost its lease (paused, partitioned) cannot write after the
   * next holder did.
   */
  token: number;
  /** Fires when the lease is lost (renewal refused, or not renewed for a whole TTL). */
  signal: AbortSignal;
}

export interface LockOptions {
  /** Lease length (default 10 s). Renewed every third of it while `fn` runs. */
  ttlMs?: number;
  /** How long to wait for a lock someone else holds (default 30 s; 0: fail at once). */
  waitMs?: number;
}

export const LOCK_OPTION_RULES: OptionRules<LockOptions> = {
  ttlMs: integer(100, 3_600_000),
  waitMs: integer(0, 86_400_000),
};

export interface LocksOptions {
  logger?: BusLogger;
}

/** Someone else holds the lock, and kept it for all of `waitMs`. */
export class LockTimeoutError extends ForgeBusError {
  constructor(
    readonly key: string,
    readonly holder: string,
    waitMs: number,
  ) {
    super('LOCK_TIMEOUT', `lock "${key}" is held by ${holder}; not released within ${waitMs} ms`);
  }
}

/** The lease was lost while `fn` ran: what `fn` did after that point is not protected. */
export class LockLostError extends ForgeBusError {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super('LOCK_LOST', `lost lock "${key}": ${reason}`);
  }
}

interface LockRecord {
  holder: string;
  /** The fencing token of this grant (the revision that granted it), for operators. */
  token?: number;
  ttlMs: number;
}

/**
 * Cluster-wide locks with leases and fencing tokens on a KV bucket.
 *
 * A lock is a key. Taking a free lock is `kv.create` (one of several contenders wins); taking an
 * expired one is compare-and-swap on its revision. Whether a lease expired is judged on the
 * server's clock only: the age of the holder's last renewal (the entry's server timestamp) against
 * the server's time now (read by writing a probe key), so clocks of nodes never matter. nats-server
 * 2.9 has no per-key TTL, which is why expiry is judged this way instead of left to the bucket.
 */
export class Locks {
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private kv?: Promise<KV>;
  readonly stats = { granted: 0, takenOver: 0, lost: 0, waits: 0 };

  constructor(
    private readonly bus: ForgeBus,
    options: LocksOptions = {},
  ) {
    checkOptions('Locks', options, { logger });
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
  }

  /** Runs `fn` while holding `key`; the lease is renewed until `fn` settles, then released. */
  async withLock<T>(key: string, fn: (grant: LockGrant) => Promise<T> | T, options: LockOptions = {}): Promise<T> {
    checkOptions('withLock', options, LOCK_OPTION_RULES);
    const ttlMs = options.ttlMs ?? 10_000;
    const kv = await this.bucket();
    const { token, revision } = await this.acquire(kv, key, ttlMs, options.waitMs ?? 30_000);
    const controller = new AbortController();
    let current = revision;
    let lastRenewal = performance.now();
    const lose = (reason: string) => {
      if (controller.signal.aborted) return;
      this.stats.lost++;
      this.logger.warn(`lost lock "${key}" (token ${token}): ${reason}`);
      controller.abort(new LockLostError(key, reason));
    };
    const renew = setInterval(() => {
      if (controller.signal.aborted) return;
      if (performance.now() - lastRenewal > ttlMs) return lose(`not renewed for ${ttlMs} ms`);
      kv.update(key, JSON.stringify({ holder: this.bus.nodeId, token, ttlMs } satisfies LockRecord), current).then(
        (next) => {
          current = next;
          lastRenewal = performance.now();
        },
        (err: Error) => {
          // A wrong revision means someone took the lock over: it is gone for good.
          if (/wrong last sequence|10071/.test(err.message)) lose('another node took it over (the lease had expired)');
          else this.errorLog.line(`cannot renew lock "${key}" yet: ${err.message}`);
        },
      );
    }, Math.max(50, Math.floor(ttlMs / 3)));
    try {
      return await fn({ key, token, signal: controller.signal });
    } finally {
      clearInterval(renew);
      if (!controller.signal.aborted) {
        // Only our own grant is released: a lock taken over meanwhile has another revision.
        await kv.delete(key, { previousSeq: current }).catch(() => undefined);
      }
    }
  }

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.bus.nc, LOCKS_BUCKET, this.bus.replicas, { history: 1 }, { compareAndSwap: { warn: (m) => this.logger.warn(m) } });
    return this.kv;
  }

  private async acquire(kv: KV, key: string, ttlMs: number, waitMs: number): Promise<{ token: number; revision: number }> {
    const deadline = performance.now() + waitMs;
    let pause = 5;
    for (;;) {
      const granted = await this.tryAcquire(kv, key, ttlMs);
      if (typeof granted !== 'string') {
        this.stats.granted++;
        return granted;
      }
      if (performance.now() >= deadline) throw new LockTimeoutError(key, granted, waitMs);
      this.stats.waits++;
      await new Promise((resolve) => setTimeout(resolve, pause + Math.random() * pause));
      pause = Math.min(100, pause * 2);
    }
  }

  /** The grant, or the current holder's id. */
  private async tryAcquire(kv: KV, key: string, ttlMs: number): Promise<{ token: number; revision: number } | string> {
    // The token is the revision of the write that granted the lock: revisions only grow.
    const claim = JSON.stringify({ holder: this.bus.nodeId, ttlMs } satisfies LockRecord);
    const entry = await kv.get(key);
    if (!entry || entry.operation !== 'PUT') {
      try {
        const revision = await kv.create(key, claim);
        return { token: revision, revision };
      } catch {
        return 'another contender';
      }
    }
    const held = entry.json<LockRecord>();
    if (!(await this.expired(kv, entry, held.ttlMs))) return held.holder;
    try {
      const revision = await kv.update(key, claim, entry.revision);
      this.stats.takenOver++;
      this.logger.warn(`took over lock "${key}" from ${held.holder}: its lease of ${held.ttlMs} ms had expired`);
      return { token: revision, revision };
    } catch {
      return 'another contender';
    }
  }

  /** Whether the holder's last renewal is older than its TTL, on the server's clock. */
  private async expired(kv: KV, entry: KvEntry, ttlMs: number): Promise<boolean> {
    const probe = `clock.${this.bus.nodeId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    await kv.put(probe, '');
    const now = await kv.get(probe);
    return now !== null && now.created.getTime() - entry.created.getTime() > ttlMs;
  }
}

import { hostname } from 'node:os';
import { type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import {
  agreeOnSettings,
  anyOf,
  arrayOf,
  checkOptions,
  consoleLogger,
  fn,
  integer,
  logger,
  nonEmptyString,
  RateLimitedLog,
  type BusLogger,
  type ForgeBus,
  type OptionRules,
  openBucket,
  describeNatsError,
} from '../bus/index.js';

/** KV bucket of the live members: one key per node id, expiring with the bucket's TTL. */
export const MEMBERS_BUCKET = 'FORGE_NODES';

/** What every member says about itself, refreshed every `refreshMs`. */
export interface MemberRecord {
  id: string;
  host: string;
  pid: number;
  /** forgebus version of the process. */
  version: string;
  startedAt: string;
  /** Where the node serves HTTP, if it does. */
  address?: string;
  roles: string[];
  /** Live figures the application reports (SSE streams, cache hit rate, writes applied …). */
  counters: Record<string, number>;
}

export interface MembershipOptions {
  /** How long a member that stopped refreshing stays listed (bucket TTL, default 15 s; the same on every node). */
  ttlMs?: number;
  /** How often the record is refreshed (default ttlMs / 3). */
  refreshMs?: number;
  /** Where the node serves HTTP, if it does; a function when it is known only once it listens. */
  address?: string | (() => string | undefined);
  roles?: string[];
  version?: string;
  /** Figures published with every refresh. */
  counters?: () => Record<string, number>;
  logger?: BusLogger;
}

export const MEMBERSHIP_OPTION_RULES: OptionRules<MembershipOptions> = {
  ttlMs: integer(1_000, 3_600_000),
  refreshMs: integer(100, 3_600_000),
  address: anyOf(nonEmptyString, fn),
  roles: arrayOf(nonEmptyString, 'an array of role names'),
  version: nonEmptyString,
  counters: fn,
  logger,
};

export type MembershipChange = { type: 'joined'; member: MemberRecord } | { type: 'left'; id: string; reason: 'shutdown' | 'expired' };

interface Known {
  record: MemberRecord;
  /** performance.now() when this process last saw the record written (no clock of another node is trusted). */
  seenAt: number;
}

/**
 * Cluster membership on a KV bucket with a TTL. Each process refreshes its own key; every process
 * follows the bucket with a watcher. nats-server 2.9 sends no watch event when a key expires, so
 * departures are found here: a member not seen written for longer than the TTL is looked up, and
 * counted gone only when the bucket no longer has it (a lookup that fails says nothing).
 */
export class Membership {
  readonly nodeId: string;
  private readonly ttlMs: number;
  private readonly refreshMs: number;
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private readonly startedAt = new Date().toISOString();
  private readonly known = new Map<string, Known>();
  private readonly listeners = new Set<(change: MembershipChange) => void>();
  private kv?: KV;
  private watcher?: QueuedIterator<KvWatchEntry>;
  private watchLoop?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private stopping = false;
  /** No departures are declared until this time: after a reconnect, peers need a refresh to re-appear. */
  private graceUntil = 0;
  /** performance.now() of the watcher's last entry: this process's own refreshes arrive there too. */
  private lastWatchEntryAt = performance.now();
  readonly stats = { refreshes: 0, refreshFailures: 0, watchRestarts: 0, joins: 0, departures: 0 };

  constructor(
    private readonly bus: ForgeBus,
    private readonly options: MembershipOptions = {},
  ) {
    checkOptions('Membership', options, MEMBERSHIP_OPTION_RULES);
    this.nodeId = bus.nodeId;
    this.ttlMs = options.ttlMs ?? 15_000;
    this.refreshMs = options.refreshMs ?? Math.floor(this.ttlMs / 3);
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
  }

  /** Joins: records this process, follows the others. */
  async start(): Promise<void> {
    if (this.kv) return;
    await agreeOnSettings(this.bus.nc, [
      { name: 'cluster.nodeTtlMs', value: this.ttlMs, change: 'record it with `npm run settings -- set cluster.nodeTtlMs <ms>`, then restart the nodes with it' },
    ]);
    this.kv = await openBucket(this.bus.nc, MEMBERS_BUCKET, this.bus.replicas, { ttl: this.ttlMs, history: 1 });
    await this.refresh();
    await this.openWatch();
    this.bus.onStatus((status) => {
      if (status.type !== 'reconnect') return;
      this.graceUntil = performance.now() + this.refreshMs * 2;
      void this.refresh();
    });
    this.timer = setInterval(() => void this.tick(), this.refreshMs);
    this.timer.unref();
  }

  /** Leaves at once (its key is deleted), instead of after the TTL. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    this.watcher?.stop();
    await this.watchLoop;
    await this.kv?.delete(this.nodeId).catch(() => undefined);
  }

  /** The live members, this process included. */
  members(): MemberRecord[] {
    return [...this.known.values()].map((k) => k.record).sort((a, b) => a.id.localeCompare(b.id));
  }

  isMember(id: string): boolean {
    return this.known.has(id);
  }

  /** Follows joins and departures. */
  onChange(listener: (change: MembershipChange) => void): { unsubscribe(): void } {
    this.listeners.add(listener);
    return { unsubscribe: () => this.listeners.delete(listener) };
  }

  private record(): MemberRecord {
    let counters: Record<string, number> = {};
    try {
      counters = this.options.counters?.() ?? {};
    } catch (err) {
      this.errorLog.line(`membership counters failed: ${(err as Error).message}`);
    }
    return {
      id: this.nodeId,
      host: hostname(),
      pid: process.pid,
      version: this.options.version ?? 'unknown',
      startedAt: this.startedAt,
      address: typeof this.options.address === 'function' ? this.options.address() : this.options.address,
      roles: this.options.roles ?? [],
      counters,
    };
  }

  private async tick(): Promise<void> {
    await this.refresh();
    // Our own refreshes come back through the watcher: silence means it is stuck, not idle.
    if (this.bus.connected && performance.now() - this.lastWatchEntryAt > this.refreshMs * 3) {
      this.errorLog.line('membership watcher delivers nothing (not even our own refreshes): re-opening it');
      this.lastWatchEntryAt = performance.now();
      this.watcher?.stop();
    }
    await this.findDepartures();
  }

  /** Publishes this node's record now instead of at the next refresh (e.g. once its address is known). */
  async announce(): Promise<void> {
    await this.refresh();
  }

  private async refresh(): Promise<void> {
    if (this.stopping || !this.kv) return;
    try {
      await this.kv.put(this.nodeId, JSON.stringify(this.record()));
      this.stats.refreshes++;
    } catch (err) {
      this.stats.refreshFailures++;
      this.errorLog.line(`membership refresh of ${this.nodeId} failed: ${describeNatsError(err)}`);
    }
  }

  private async openWatch(): Promise<void> {
    this.watcher = await this.kv!.watch();
    this.watchLoop = this.follow(this.watcher);
  }

  /** Applies watch entries; re-opens the watcher when it ends or fails (logged, counted). */
  private async follow(watcher: QueuedIterator<KvWatchEntry>): Promise<void> {
    try {
      for await (const entry of watcher) this.apply(entry);
    } catch (err) {
      this.errorLog.line(`membership watcher failed: ${(err as Error).message}`);
    }
    while (!this.stopping) {
      this.stats.watchRestarts++;
      this.errorLog.line('membership watcher ended: re-opening it');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      if (this.stopping) return;
      try {
        await this.openWatch();
        return;
      } catch (err) {
        this.errorLog.line(`membership watcher cannot re-open yet: ${(err as Error).message}`);
      }
    }
  }

  private apply(entry: KvWatchEntry): void {
    this.lastWatchEntryAt = performance.now();
    if (entry.operation !== 'PUT') {
      this.depart(entry.key, 'shutdown');
      return;
    }
    let record: MemberRecord;
    try {
      record = entry.json<MemberRecord>();
    } catch {
      this.errorLog.line(`membership record of ${entry.key} is not JSON: ignored`);
      return;
    }
    const joined = !this.known.has(entry.key);
    this.known.set(entry.key, { record, seenAt: performance.now() });
    if (joined) {
      this.stats.joins++;
      this.emit({ type: 'joined', member: record });
    }
  }

  /** Members not seen written for longer than the TTL: gone if the bucket agrees. */
  private async findDepartures(): Promise<void> {
    const now = performance.now();
    if (!this.kv || now < this.graceUntil || !this.bus.connected) return;
    for (const [id, { seenAt }] of this.known) {
      if (id === this.nodeId || now - seenAt <= this.ttlMs) continue;
      try {
        const entry = await this.kv.get(id);
        if (!entry || entry.operation !== 'PUT') this.depart(id, 'expired');
        else this.known.set(id, { record: entry.json<MemberRecord>(), seenAt: performance.now() });
      } catch {
        // Unreachable bucket: no conclusion.
      }
    }
  }

  private depart(id: string, reason: 'shutdown' | 'expired'): void {
    if (!this.known.delete(id)) return;
    this.stats.departures++;
    this.emit({ type: 'left', id, reason });
  }

  private emit(change: MembershipChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        this.errorLog.line(`a membership listener threw: ${(err as Error).message}`);
      }
    }
  }
}

import { checkOptions, fn, integer, type OptionRules } from '../bus/index.js';
import { LRUCache } from 'lru-cache';

export interface TaggedCacheOptions {
  /** Entry count bound (default 10,000). */
  maxEntries?: number;
  /** Size bound in bytes, as measured by `sizeOf` (default 64 MiB). */
  maxBytes?: number;
  /** Size of a value in bytes (default: length of its JSON). */
  sizeOf?: (value: unknown) => number;
  /**
   * How many tags' last invalidation the fill guard remembers (default 100,000). Older ones are
   * summarised by one conservative watermark, so forgetting never lets a stale fill in.
   */
  maxTagHistory?: number;
}

/** Taken before reading the source of a value; `set` refuses the value if it may be stale. */
export type FillTicket = number;

export interface TaggedCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  /** Invalidation calls (one per applied event or local change with tags). */
  invalidations: number;
  /** Entries removed by invalidations. */
  invalidatedEntries: number;
  flushes: number;
  /** Fills refused because an invalidation of one of their tags (or a flush) happened during the read. */
  staleFillsRefused: number;
}

interface Entry<V> {
  value: V;
  tags: readonly string[];
  /** Stream sequence the cache had applied when the read started (diagnostics). */
  seq: number;
}

const defaultSizeOf = (value: unknown): number => {
  try {
    return Math.max(1, (JSON.stringify(value) ?? '').length);
  } catch {
    return 1024;
  }
};

/**
 * An LRU cache (lru-cache, bounded by entries and bytes) whose entries carry tags, with a guard
 * against the fill/invalidate race.
 *
 * The race: a read starts, the value changes elsewhere and the invalidation is applied here, then
 * the read finishes and would store the old value, which no later event will ever remove. The
 * guard counts invalidations (an epoch). A reader takes a ticket (the epoch) before it reads the
 * source; `set` refuses the value when any of its tags was invalidated, or the cache flushed,
 * after that ticket.
 */
export const TAGGED_CACHE_OPTION_RULES: OptionRules<TaggedCacheOptions> = {
  maxEntries: integer(1, 100_000_000),
  maxBytes: integer(1),
  sizeOf: fn,
  maxTagHistory: integer(1, 100_000_000),
};

export class TaggedCache<V = unknown> {
  private readonly lru: LRUCache<string, Entry<V>>;
  private readonly keysByTag = new Map<string, Set<string>>();
  private readonly tagEpochs: LRUCache<string, number>;
  private epoch = 0;
  /** Highest epoch of a tag the history forgot, or of the last flush: a lower bound for all tags. */
  private watermark = 0;
  private readonly counters = { hits: 0, misses: 0, invalidations: 0, invalidatedEntries: 0, flushes: 0, staleFillsRefused: 0 };

  constructor(options: TaggedCacheOptions = {}) {
    checkOptions('TaggedCache', options, TAGGED_CACHE_OPTION_RULES);
    const sizeOf = options.sizeOf ?? defaultSizeOf;
    this.lru = new LRUCache<string, Entry<V>>({
      max: options.maxEntries ?? 10_000,
      maxSize: options.maxBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (entry, key) => sizeOf(entry.value) + key.length,
      dispose: (entry, key) => this.unindex(key, entry.tags),
    });
    this.tagEpochs = new LRUCache<string, number>({
      max: options.maxTagHistory ?? 100_000,
      dispose: (epoch) => {
        if (epoch > this.watermark) this.watermark = epoch;
      },
    });
  }

  get stats(): TaggedCacheStats {
    return { entries: this.lru.size, bytes: this.lru.calculatedSize, ...this.counters };
  }

  get(key: string): V | undefined {
    const entry = this.lru.get(key);
    if (entry) this.counters.hits++;
    else this.counters.misses++;
    return entry?.value;
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  /** Stream sequence recorded with an entry, if cached. */
  seqOf(key: string): number | undefined {
    return this.lru.peek(key)?.seq;
  }

  beginFill(): FillTicket {
    return this.epoch;
  }

  /** Stores `value` unless it may be stale (see the class comment). Returns whether it stored. */
  set(key: string, value: V, tags: readonly string[], ticket: FillTicket, seq = 0): boolean {
    if (this.watermark > ticket || tags.some((tag) => (this.tagEpochs.peek(tag) ?? 0) > ticket)) {
      this.counters.staleFillsRefused++;
      return false;
    }
    this.lru.set(key, { value, tags, seq });
    if (!this.lru.has(key)) return false; // larger than the whole cache
    for (const tag of tags) {
      let keys = this.keysByTag.get(tag);
      if (!keys) this.keysByTag.set(tag, (keys = new Set()));
      keys.add(key);
    }
    return true;
  }

  /** Drops every entry carrying any of `tags`; returns how many. */
  invalidate(tags: readonly string[]): number {
    if (tags.length === 0) return 0;
    const epoch = ++this.epoch;
    this.counters.invalidations++;
    let removed = 0;
    for (const tag of tags) {
      this.tagEpochs.set(tag, epoch);
      const keys = this.keysByTag.get(tag);
      if (!keys) continue;
      for (const key of [...keys]) {
        if (this.lru.delete(key)) removed++;
      }
    }
    this.counters.invalidatedEntries += removed;
    return removed;
  }

  /** Drops everything, and refuses every fill that started before. */
  flush(): void {
    this.watermark = ++this.epoch;
    this.counters.flushes++;
    this.lru.clear();
    this.keysByTag.clear();
  }

  private unindex(key: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const keys = this.keysByTag.get(tag);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) this.keysByTag.delete(tag);
    }
  }
}

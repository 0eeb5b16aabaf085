import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TaggedCache } from '../../src/cache/index.js';

describe('TaggedCache', () => {
  describe('tags', () => {
    it('stores under a key, and invalidating any tag of an entry drops it (and only what carries that tag)', () => {
      const cache = new TaggedCache<string>();
      const t = cache.beginFill();
      assert.equal(cache.set('issue:a/w#1', 'one', ['repo:a/w', 'issue:a/w#1'], t), true);
      assert.equal(cache.set('issue:a/w#2', 'two', ['repo:a/w', 'issue:a/w#2'], t), true);
      assert.equal(cache.set('issues:a/w', 'list', ['repo:a/w', 'issues:a/w'], t), true);
      assert.equal(cache.set('repo:b/x', 'other', ['repo:b/x'], t), true);

      assert.equal(cache.invalidate(['issue:a/w#1']), 1);
      assert.equal(cache.get('issue:a/w#1'), undefined);
      assert.equal(cache.get('issue:a/w#2'), 'two');
      assert.equal(cache.get('issues:a/w'), 'list');

      // One entry under several invalidated tags is counted once.
      assert.equal(cache.invalidate(['issue:a/w#2', 'repo:a/w']), 2);
      assert.equal(cache.has('issue:a/w#2'), false);
      assert.equal(cache.has('issues:a/w'), false);
      assert.equal(cache.get('repo:b/x'), 'other');

      assert.equal(cache.invalidate(['no-such-tag']), 0);
      assert.equal(cache.invalidate([]), 0, 'no tags: nothing, and not counted');
      const s = cache.stats;
      assert.equal(s.entries, 1);
      assert.equal(s.invalidations, 3);
      assert.equal(s.invalidatedEntries, 3);
      assert.equal(s.hits, 3);
      assert.equal(s.misses, 1);
    });

    it('re-indexes a key that is stored again with other tags', () => {
      const cache = new TaggedCache<string>();
      cache.set('k', 'v1', ['a'], cache.beginFill());
      cache.set('k', 'v2', ['b'], cache.beginFill());
      assert.equal(cache.invalidate(['a']), 0, 'the old tag no longer reaches the new value');
      assert.equal(cache.get('k'), 'v2');
      assert.equal(cache.invalidate(['b']), 1);
      assert.equal(cache.has('k'), false);
    });

    it('flush drops everything and counts', () => {
      const cache = new TaggedCache<number>();
      for (let i = 0; i < 10; i++) cache.set(`k${i}`, i, [`t${i % 3}`], cache.beginFill());
      cache.flush();
      assert.equal(cache.stats.entries, 0);
      assert.equal(cache.stats.bytes, 0);
      assert.equal(cache.stats.flushes, 1);
      assert.equal(cache.invalidate(['t0', 't1', 't2']), 0, 'the tag index was cleared with the entries');
      // The cache works normally after a flush.
      assert.equal(cache.set('k', 1, ['t0'], cache.beginFill()), true);
      assert.equal(cache.get('k'), 1);
    });

    it('records the stream sequence a fill started at', () => {
      const cache = new TaggedCache<string>();
      cache.set('k', 'v', ['t'], cache.beginFill(), 42);
      assert.equal(cache.seqOf('k'), 42);
      assert.equal(cache.seqOf('missing'), undefined);
    });
  });

  describe('bounds', () => {
    it('keeps at most maxEntries, evicting the least recently used, and unindexes evicted entries', () => {
      const cache = new TaggedCache<string>({ maxEntries: 3 });
      for (const k of ['a', 'b', 'c']) cache.set(k, k, [`tag-${k}`, 'all'], cache.beginFill());
      assert.equal(cache.get('a'), 'a'); // a is now the most recently used; b the least
      cache.set('d', 'd', ['tag-d', 'all'], cache.beginFill());
      assert.equal(cache.stats.entries, 3);
      assert.equal(cache.has('b'), false, 'least recently used evicted');
      assert.deepEqual(['a', 'c', 'd'].map((k) => cache.has(k)), [true, true, true]);
      assert.equal(cache.invalidate(['tag-b']), 0, 'an evicted entry leaves no index behind');
      assert.equal(cache.invalidate(['all']), 3);
    });

    it('keeps the total size within maxBytes (default size: JSON length + key length)', () => {
      const cache = new TaggedCache<string>({ maxBytes: 100 });
      // Each entry: key "kN" (2) + JSON of 20 x's with quotes (22) = 24 bytes -> 4 fit in 100.
      const value = 'x'.repeat(20);
      for (let i = 0; i < 10; i++) {
        cache.set(`k${i}`, value, ['t'], cache.beginFill());
        assert.ok(cache.stats.bytes <= 100, `bytes ${cache.stats.bytes} after ${i + 1} sets`);
      }
      assert.equal(cache.stats.entries, 4);
      assert.equal(cache.stats.bytes, 96);
      assert.deepEqual([6, 7, 8, 9].map((i) => cache.has(`k${i}`)), [true, true, true, true], 'the newest stay');
    });

    it('uses a custom sizeOf, and refuses (without indexing) a value larger than the whole cache', () => {
      const cache = new TaggedCache<{ size: number }>({ maxBytes: 1_000, sizeOf: (v) => (v as { size: number }).size });
      assert.equal(cache.set('small', { size: 400 }, ['t'], cache.beginFill()), true);
      assert.equal(cache.set('medium', { size: 500 }, ['t'], cache.beginFill()), true);
      assert.equal(cache.stats.bytes, 400 + 5 + 500 + 6);
      assert.equal(cache.set('huge', { size: 5_000 }, ['t', 'huge-tag'], cache.beginFill()), false);
      assert.equal(cache.has('huge'), false);
      assert.equal(cache.invalidate(['huge-tag']), 0);
      // Another 400 bytes evict the least recently used to stay under 1,000.
      assert.equal(cache.set('more', { size: 400 }, ['t'], cache.beginFill()), true);
      assert.ok(cache.stats.bytes <= 1_000);
      assert.equal(cache.has('small'), false);
      assert.equal(cache.has('medium'), true);
    });

    it('sizes values that cannot be serialized instead of throwing', () => {
      const cache = new TaggedCache<unknown>({ maxBytes: 10_000 });
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      assert.equal(cache.set('cyclic', cyclic, ['t'], cache.beginFill()), true);
      assert.equal(cache.set('bigint', 10n, ['t'], cache.beginFill()), true);
      assert.equal(cache.set('undefined-json', () => 1, ['t'], cache.beginFill()), true);
      assert.equal(cache.stats.entries, 3);
    });
  });

  describe('fill guard', () => {
    it('refuses a fill when one of its tags was invalidated after its ticket', () => {
      const cache = new TaggedCache<string>();
      const ticket = cache.beginFill(); // the read starts: it will see the old title
      cache.invalidate(['issue:a/w#3']); // the update is applied while the read is in flight
      assert.equal(cache.set('issue:a/w#3', 'old title', ['repo:a/w', 'issue:a/w#3'], ticket), false);
      assert.equal(cache.has('issue:a/w#3'), false);
      assert.equal(cache.stats.staleFillsRefused, 1);
      // A read that starts after the invalidation may store.
      assert.equal(cache.set('issue:a/w#3', 'new title', ['repo:a/w', 'issue:a/w#3'], cache.beginFill()), true);
      assert.equal(cache.get('issue:a/w#3'), 'new title');
    });

    it('refuses a fill when the cache was flushed after its ticket', () => {
      const cache = new TaggedCache<string>();
      const ticket = cache.beginFill();
      cache.flush();
      assert.equal(cache.set('k', 'v', ['anything'], ticket), false);
      assert.equal(cache.stats.staleFillsRefused, 1);
      assert.equal(cache.set('k', 'v', ['anything'], cache.beginFill()), true);
    });

    it('stores a fill when only unrelated tags were invalidated during it', () => {
      const cache = new TaggedCache<string>();
      const ticket = cache.beginFill();
      cache.invalidate(['issue:a/w#4', 'issues:b/x']);
      cache.invalidate(['perm:a/w']);
      assert.equal(cache.set('issue:a/w#3', 'v', ['repo:a/w', 'issue:a/w#3'], ticket), true);
      assert.equal(cache.get('issue:a/w#3'), 'v');
      assert.equal(cache.stats.staleFillsRefused, 0);
    });

    it('an invalidation before the ticket does not block the fill; one in between does, whatever came after', () => {
      const cache = new TaggedCache<string>();
      cache.invalidate(['t']);
      const afterFirst = cache.beginFill();
      assert.equal(cache.set('k', 'v', ['t'], afterFirst), true);
      const early = cache.beginFill();
      cache.invalidate(['t']);
      const late = cache.beginFill();
      cache.invalidate(['other']);
      assert.equal(cache.set('k', 'early', ['t'], early), false);
      assert.equal(cache.set('k', 'late', ['t'], late), true);
      assert.equal(cache.get('k'), 'late');
    });

    it('interleaved fills of one key: only the one that started after the last invalidation lands', () => {
      const cache = new TaggedCache<number>();
      const tags = ['issue:a/w#1'];
      const tickets: { ticket: number; value: number }[] = [];
      // Read 0 starts, then (invalidate, read) pairs: read i sees value i.
      tickets.push({ ticket: cache.beginFill(), value: 0 });
      for (let i = 1; i <= 5; i++) {
        cache.invalidate(tags);
        tickets.push({ ticket: cache.beginFill(), value: i });
      }
      // They finish in reverse order (slowest first) — only the last read is current.
      const stored = tickets.reverse().map(({ ticket, value }) => cache.set('k', value, tags, ticket));
      assert.deepEqual(stored, [true, false, false, false, false, false]);
      assert.equal(cache.get('k'), 5);
    });

    it('stays conservative when the tag history is smaller than the tags invalidated', () => {
      const cache = new TaggedCache<string>({ maxTagHistory: 2 });
      const ticket = cache.beginFill();
      cache.invalidate(['issue:a/w#1']); // forgotten below
      cache.invalidate(['x']);
      cache.invalidate(['y']);
      cache.invalidate(['z']); // history now holds y and z only
      assert.equal(cache.set('issue:a/w#1', 'stale', ['issue:a/w#1'], ticket), false, 'a forgotten tag still refuses an older fill');
      assert.equal(cache.set('unrelated', 'maybe stale', ['never-invalidated'], ticket), false, 'the watermark refuses every older fill');
      assert.equal(cache.stats.staleFillsRefused, 2);

      // Fills that started after everything forgotten are not blocked by the watermark...
      const fresh = cache.beginFill();
      assert.equal(cache.set('issue:a/w#1', 'fresh', ['issue:a/w#1'], fresh), true);
      // ...and a remembered tag still works normally.
      const beforeY = cache.beginFill();
      cache.invalidate(['y']);
      assert.equal(cache.set('k-y', 'v', ['y'], beforeY), false);
      assert.equal(cache.set('k-other', 'v', ['other'], beforeY), true, 'y is remembered, so an unrelated fill is not refused');
    });

    it('never lets a stale fill in, under random interleavings with a tiny tag history (model check)', () => {
      // A model: `version[tag]` counts changes of the source. A fill read at ticket time sees the
      // versions of that moment; it is stale if any of its tags changed before it is stored.
      // Whatever the cache stores must be current at store time.
      let seed = 12345;
      const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
      const tagNames = Array.from({ length: 12 }, (_, i) => `t${i}`);
      for (const maxTagHistory of [1, 3, 50]) {
        const cache = new TaggedCache<string>({ maxTagHistory, maxEntries: 8 });
        const version = new Map<string, number>(tagNames.map((t) => [t, 0]));
        const inFlight: { key: string; tags: string[]; ticket: number; seen: number[] }[] = [];
        const storedFills = new Map<string, { tags: string[]; seen: number[] }>();
        const isCurrent = (f: { tags: string[]; seen: number[] }) => f.tags.every((t, i) => version.get(t) === f.seen[i]);
        let refused = 0;
        for (let step = 0; step < 5_000; step++) {
          const r = random();
          if (r < 0.4) {
            const tags = [tagNames[Math.floor(random() * tagNames.length)]!, tagNames[Math.floor(random() * tagNames.length)]!];
            inFlight.push({ key: `k${Math.floor(random() * 10)}`, tags, ticket: cache.beginFill(), seen: tags.map((t) => version.get(t)!) });
          } else if (r < 0.75 && inFlight.length > 0) {
            const [fill] = inFlight.splice(Math.floor(random() * inFlight.length), 1);
            const stored = cache.set(fill!.key, fill!.seen.join(','), fill!.tags, fill!.ticket);
            if (stored) storedFills.set(fill!.key, fill!);
            else refused++;
          } else if (r < 0.98) {
            const tag = tagNames[Math.floor(random() * tagNames.length)]!;
            version.set(tag, version.get(tag)! + 1);
            cache.invalidate([tag]);
          } else {
            for (const t of tagNames) version.set(t, version.get(t)! + 1);
            cache.flush();
          }
          // Every entry the cache holds is current (a stale fill was refused, or an invalidation removed it).
          for (const [key, fill] of storedFills) {
            if (cache.has(key)) assert.ok(isCurrent(fill), `stale entry ${key} held (history ${maxTagHistory}, step ${step})`);
          }
        }
        assert.ok(refused > 0, 'the interleavings did exercise the guard');
      }
    });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plainToInstance } from 'class-transformer';
import { IsIn, IsOptional, IsString, Length, Matches, MaxLength, validateSync } from 'class-validator';
import fc from 'fast-check';
import { BUILTIN_EVENTS } from '../../src/bus/index.js';
import { compileFastCheck } from '../../src/bus/catalog/fast-validator.js';

// The fast check may only say "valid" where class-validator says valid: the catalog trusts it.
const classValidatorAccepts = (cls: new () => object, payload: Record<string, unknown>) =>
  validateSync(plainToInstance(cls, payload), { whitelist: true, forbidNonWhitelisted: true, forbidUnknownValues: false }).length === 0;

class Tricky {
  @Length(2, 4) short!: string;
  @IsOptional() @MaxLength(3) note?: string;
  @IsIn(['a', 1, null]) choice!: unknown;
  @Matches('^x+$', 'i') xs!: string;
  @IsString({ each: true }) tags!: string[];
}

const sha = fc.stringMatching(/^[0-9a-f]{40}$/);
const value = fc.oneof(
  fc.integer({ min: -3, max: 5 }),
  fc.double({ noNaN: false }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
  fc.constantFrom('😀😀', 'e\uFE0F', 'open', 'closed', 'refs/heads/main', 'XxX', 'a', 1, null, undefined, true, false, 0),
  sha,
  fc.array(fc.oneof(fc.string({ maxLength: 3 }), fc.integer()), { maxLength: 3 }),
  fc.object({ maxDepth: 1 }),
);

const SHA = 'ab'.repeat(20);
/** One valid payload per payload class: the base every generated payload is mutated from. */
const VALID: Record<string, Record<string, unknown>> = {
  'repo.created': { isPrivate: false, defaultBranch: 'main' },
  'repo.deleted': {},
  'repo.renamed': { oldName: 'a', newName: 'b' },
  'repo.transferred': { oldOwner: 'a', newOwner: 'b' },
  'repo.pushed': { ref: 'refs/heads/main', before: SHA, after: SHA, commitCount: 1 },
  'repo.collaborator_changed': { user: 'bob', change: 'added' },
  'ref.created': { ref: 'refs/tags/v1', sha: SHA },
  'ref.deleted': { ref: 'refs/tags/v1', sha: SHA },
  'issue.created': { number: 1, title: 'x' },
  'issue.updated': { number: 1, changed: ['title'] },
  'issue.status_changed': { number: 1, state: 'open' },
  'issue.deleted': { number: 1 },
  'comment.created': { issueNumber: 1, commentId: 1 },
  'comment.updated': { issueNumber: 1, commentId: 1 },
  'comment.deleted': { issueNumber: 1, commentId: 1 },
  'pull_request.opened': { number: 1, title: 't', head: 'h', base: 'b' },
  'pull_request.merged': { number: 1, mergeSha: SHA },
  'pull_request.closed': { number: 1 },
  'user.notification_count': { count: 0 },
  'user.logged_out': { sessionId: 's' },
  tricky: { short: '😀😀😀', note: 'abc', choice: null, xs: 'XX', tags: ['a', 'b'] },
};

const cases: [string, new () => object][] = [
  ...BUILTIN_EVENTS.filter((d) => d.type !== 'user.stopwatch_changed').map((d) => [d.type, d.payload] as [string, new () => object]),
  ['tricky', Tricky],
];

/** A valid payload with 1-3 fields replaced by arbitrary values, deleted, or added. */
function mutated(base: Record<string, unknown>) {
  const keys = [...Object.keys(base), 'extra'];
  const change = fc.tuple(fc.constantFrom(...keys), fc.oneof(value, fc.constant('__delete__')));
  return fc.array(change, { minLength: 1, maxLength: 3 }).map((changes) => {
    const payload: Record<string, unknown> = { ...base };
    for (const [key, v] of changes) {
      if (v === '__delete__') delete payload[key];
      else payload[key] = v;
    }
    return payload;
  });
}

describe('compiled fast payload check', () => {
  it('never accepts a payload that class-validator rejects', () => {
    for (const [name, cls] of cases) {
      const fast = compileFastCheck(cls)!;
      fc.assert(
        fc.property(mutated(VALID[name]!), (payload) => {
          if (fast(payload)) assert.ok(classValidatorAccepts(cls, payload), `${name}: ${JSON.stringify(payload)}`);
        }),
        { numRuns: 400 },
      );
    }
  });

  it('accepts the valid payloads (so the fast path is taken)', () => {
    for (const [name, cls] of cases) {
      assert.ok(classValidatorAccepts(cls, VALID[name]!), name);
      assert.equal(compileFastCheck(cls)!(VALID[name]!), true, name);
    }
  });

  it('compiles every built-in event except those with nested objects', () => {
    const uncompiled = BUILTIN_EVENTS.filter((d) => !compileFastCheck(d.payload)).map((d) => d.type);
    assert.deepEqual(uncompiled, ['user.stopwatch_changed']);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  decodeToken,
  encodeToken,
  eventSubject,
  parseEventSubject,
  SubjectCodecError,
} from '../../src/bus/index.js';

// Every encoded token must be a single, literal NATS subject token.
const SAFE_TOKEN = /^[A-Za-z0-9_~-]+$/;

describe('subject codec', () => {
  it('round-trips any well-formed string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), (name) => {
        assert.equal(decodeToken(encodeToken(name)), name);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips strings made of the dangerous characters', () => {
    const dangerous = fc.constantFrom('.', '*', '>', ' ', '\t', '\n', '%', '~', 'é', '日', '😀', 'a', '-', '_');
    fc.assert(
      fc.property(fc.array(dangerous, { maxLength: 30 }).map((a) => a.join('')), (name) => {
        const token = encodeToken(name);
        assert.match(token, SAFE_TOKEN);
        assert.equal(decodeToken(token), name);
      }),
      { numRuns: 2000 },
    );
  });

  it('never lets ".", "*", ">", whitespace, "%" or non-ASCII into a subject', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 40 }), (owner, name) => {
        const subject = eventSubject('issue.deleted', { kind: 'repo', repo: { owner, name } });
        assert.equal(subject.split('.').length, 6, subject);
        assert.doesNotMatch(subject, /[*>%\s]|[^\x21-\x7e]/);
        assert.deepEqual(parseEventSubject(subject), { type: 'issue.deleted', scope: { kind: 'repo', repo: { owner, name } } });
      }),
      { numRuns: 2000 },
    );
  });

  it('is injective: different names never share a token', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 20 }), (a, b) => {
        fc.pre(a !== b);
        assert.notEqual(encodeToken(a), encodeToken(b));
      }),
    );
  });

  it('keeps plain names readable', () => {
    assert.equal(encodeToken('acme'), 'acme');
    assert.equal(encodeToken('my-repo_2'), 'my-repo_2');
    assert.equal(encodeToken('my.repo'), 'my~2Erepo');
    assert.equal(encodeToken(''), '~');
    assert.equal(eventSubject('user.logged_out', { kind: 'user', user: 'bob' }), 'forge.user.bob.user.logged_out');
    assert.equal(eventSubject('repo.created', { kind: 'site' }), 'forge.site.repo.created');
  });

  it('rejects non-canonical or invalid tokens', () => {
    assert.throws(() => decodeToken('~41'), SubjectCodecError); // "A" must be written as A
    assert.throws(() => decodeToken('~2e'), SubjectCodecError); // lower-case hex
    assert.throws(() => decodeToken('a.b'), SubjectCodecError);
    assert.throws(() => decodeToken('~FF'), SubjectCodecError); // not UTF-8
    assert.throws(() => decodeToken('%2E'), SubjectCodecError);
    assert.throws(() => encodeToken('\uD800'), SubjectCodecError); // lone surrogate
  });

  it('rejects subjects that are not event subjects', () => {
    for (const s of ['forge', 'forge.repo.a.b.issue', 'forge.repo.a.b.c.issue.deleted', 'other.repo.a.b.issue.deleted', 'forge.site.Bad.type', 'forge.user.a.b']) {
      assert.throws(() => parseEventSubject(s), SubjectCodecError, s);
    }
  });
});

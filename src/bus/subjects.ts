import { SubjectCodecError } from './errors.js';

/**
 * Subject codec. Names that come from users (owners, repositories, user ids) become single
 * subject tokens through a reversible escape, so that `.`, `*`, `>`, whitespace, `%` or
 * non-ASCII text can never change the shape of a subject (and so never widen a subscription).
 *
 * Escape: `[A-Za-z0-9_-]` stays as it is; every other UTF-8 byte becomes `~XX` (upper-case hex);
 * the empty string becomes a lone `~`. `~` was picked because it needs no escaping in URLs and
 * is not special to NATS; `%` must not appear in subjects at all.
 */

export const SUBJECT_ROOT = 'forge';

const SAFE_BYTE = new Uint8Array(256);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') {
  SAFE_BYTE[ch.charCodeAt(0)] = 1;
}
const HEX = '0123456789ABCDEF';
const SAFE_TOKEN = /^[A-Za-z0-9_-]+$/;
const ENCODED_TOKEN = /^(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+$/;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeToken(name: string): string {
  if (name.length === 0) return '~';
  // Fast path: most names are plain.
  if (SAFE_TOKEN.test(name)) return name;
  if (!name.isWellFormed()) {
    throw new SubjectCodecError(`cannot encode ${JSON.stringify(name)}: it contains a lone UTF-16 surrogate`);
  }
  let out = '';
  for (const byte of utf8.encode(name)) {
    out += SAFE_BYTE[byte] ? String.fromCharCode(byte) : `~${HEX[byte >> 4]}${HEX[byte & 15]}`;
  }
  return out;
}

export function decodeToken(token: string): string {
  if (token === '~') return '';
  if (SAFE_TOKEN.test(token)) return token;
  if (!ENCODED_TOKEN.test(token)) {
    throw new SubjectCodecError(`"${token}" is not an encoded forgebus subject token`);
  }
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '~') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(token.charCodeAt(i));
    }
  }
  const decoded = (() => {
    try {
      return strictUtf8.decode(new Uint8Array(bytes));
    } catch {
      throw new SubjectCodecError(`"${token}" does not decode to valid UTF-8`);
    }
  })();
  // Canonical form only: a token that decodes but would not be produced by encodeToken
  // (e.g. `~41` for `A`) is rejected, so that one name has exactly one subject.
  if (encodeToken(decoded) !== token) {
    throw new SubjectCodecError(`"${token}" is not in canonical encoded form`);
  }
  return decoded;
}

export interface RepoRef {
  owner: string;
  name: string;
}

export type EventScope =
  | { kind: 'repo'; repo: RepoRef }
  | { kind: 'user'; user: string }
  | { kind: 'site' };

const EVENT_TYPE = /^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/;

/** Event types are `<entity>.<action>`, lower-case: they are used verbatim as subject tokens. */
export function assertEventType(type: string): void {
  if (!EVENT_TYPE.test(type)) {
    throw new SubjectCodecError(
      `event type "${type}" must look like "<entity>.<action>" in lower case (letters, digits, "_"), e.g. "issue.deleted"`,
    );
  }
}

/** The subject an event of `type` within `scope` is published on. */
export function eventSubject(type: string, scope: EventScope): string {
  switch (scope.kind) {
    case 'repo':
      return `${SUBJECT_ROOT}.repo.${encodeToken(scope.repo.owner)}.${encodeToken(scope.repo.name)}.${type}`;
    case 'user':
      return `${SUBJECT_ROOT}.user.${encodeToken(scope.user)}.${type}`;
    case 'site':
      return `${SUBJECT_ROOT}.site.${type}`;
  }
}

/** Subject filter for every event of one repository (`forge.repo.<owner>.<name>.>`). */
export function repoSubjectFilter(repo: RepoRef): string {
  return `${SUBJECT_ROOT}.repo.${encodeToken(repo.owner)}.${encodeToken(repo.name)}.>`;
}

/** Subject filter for every event addressed to one user (`forge.user.<user>.>`). */
export function userSubjectFilter(user: string): string {
  return `${SUBJECT_ROOT}.user.${encodeToken(user)}.>`;
}

export interface ParsedEventSubject {
  type: string;
  scope: EventScope;
}

/** Reads an event subject back; throws SubjectCodecError for anything that is not one. */
export function parseEventSubject(subject: string): ParsedEventSubject {
  const tokens = subject.split('.');
  const fail = (): never => {
    throw new SubjectCodecError(`"${subject}" is not a forgebus event subject`);
  };
  if (tokens[0] !== SUBJECT_ROOT) fail();
  let scope: EventScope;
  let rest: string[];
  switch (tokens[1]) {
    case 'repo':
      if (tokens.length !== 6) fail();
      scope = { kind: 'repo', repo: { owner: decodeToken(tokens[2]!), name: decodeToken(tokens[3]!) } };
      rest = tokens.slice(4);
      break;
    case 'user':
      if (tokens.length !== 5) fail();
      scope = { kind: 'user', user: decodeToken(tokens[2]!) };
      rest = tokens.slice(3);
      break;
    case 'site':
      if (tokens.length !== 4) fail();
      scope = { kind: 'site' };
      rest = tokens.slice(2);
      break;
    default:
      return fail();
  }
  const type = rest.join('.');
  if (!EVENT_TYPE.test(type)) fail();
  return { type, scope };
}

/** The subjects the FORGE_EVENTS stream captures. */
export const EVENT_STREAM_SUBJECTS = [`${SUBJECT_ROOT}.repo.>`, `${SUBJECT_ROOT}.user.>`, `${SUBJECT_ROOT}.site.>`];

import { InvalidOptionError } from './errors.js';

/**
 * Checks of the options objects given to public constructors. A rule answers undefined for a
 * good value, or what it expected (the "allowed" part of the error); `undefined` values mean
 * "use the default" and are not checked. Unknown keys are refused too: a misspelt option that is
 * silently ignored is a surprise in production.
 */
export type OptionRule = (value: unknown, at: OptionPath) => string | undefined;

/** Where a value sits: the owner (`SseHub`) and the option's dotted path (`connection.servers`). */
export interface OptionPath {
  owner: string;
  path: string;
}

export type OptionRules<T> = { readonly [K in keyof Required<T>]: OptionRule };

const MS_MAX = 2_147_483_647; // setTimeout's limit: longer delays fire at once

export const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): OptionRule =>
  (value) =>
    typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
      ? undefined
      : `an integer from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}`;

/** A duration in milliseconds that a timer can wait for. */
export const millis = (min = 1, max = MS_MAX): OptionRule => integer(min, max);

export const boolean: OptionRule = (value) => (typeof value === 'boolean' ? undefined : 'true or false');

export const fn: OptionRule = (value) => (typeof value === 'function' ? undefined : 'a function');

export const nonEmptyString: OptionRule = (value) => (typeof value === 'string' && value.length > 0 ? undefined : 'a non-empty string');

export const oneOf =
  (...allowed: readonly string[]): OptionRule =>
  (value) =>
    typeof value === 'string' && allowed.includes(value) ? undefined : `one of ${allowed.map((a) => `"${a}"`).join(', ')}`;

export const matching =
  (pattern: RegExp, description: string): OptionRule =>
  (value) =>
    typeof value === 'string' && pattern.test(value) ? undefined : description;

export const arrayOf =
  (item: OptionRule, description: string): OptionRule =>
  (value, at) =>
    Array.isArray(value) && value.every((v) => item(v, at) === undefined) ? undefined : description;

export const anyOf =
  (...rules: OptionRule[]): OptionRule =>
  (value, at) => {
    const expected = rules.map((rule) => rule(value, at));
    return expected.includes(undefined) ? undefined : expected.join(', or ');
  };

/** A plain object whose own values all satisfy `value` (e.g. extra invalidation rules by type). */
export const recordOf =
  (value: OptionRule, description: string): OptionRule =>
  (v, at) =>
    isPlainObject(v) && Object.values(v).every((x) => value(x, at) === undefined) ? undefined : description;

/** An object with log, warn and error methods (console, Nest's Logger, pino …). */
export const logger: OptionRule = (value) =>
  typeof value === 'object' && value !== null && ['log', 'warn', 'error'].every((m) => typeof (value as Record<string, unknown>)[m] === 'function')
    ? undefined
    : 'an object with log, warn and error methods';

/** Accepted without a check: the value is handed on to a component that checks it itself. */
export const delegated: OptionRule = () => undefined;

/** A nested options object, checked with its own rules (errors name `parent.child`). */
export const nested =
  <T extends object>(rules: OptionRules<T>): OptionRule =>
  (value, at) => {
    if (!isPlainObject(value)) return 'an object';
    checkOptions(at.owner, value as T, rules, at.path);
    return undefined;
  };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Throws InvalidOptionError for the first option of `options` that breaks its rule or has no
 * rule at all. `owner` names the constructor or function for the message (`SseHub`).
 */
export function checkOptions<T extends object>(owner: string, options: T | undefined, rules: OptionRules<T>, path = ''): void {
  if (options === undefined) return;
  if (!isPlainObject(options)) throw new InvalidOptionError(owner, path || 'options', options, 'an object');
  for (const [key, value] of Object.entries(options)) {
    const name = path ? `${path}.${key}` : key;
    const rule = (rules as Record<string, OptionRule | undefined>)[key];
    if (!Object.hasOwn(rules, key) || rule === undefined) {
      throw new InvalidOptionError(owner, name, value, `no such option (known: ${Object.keys(rules).join(', ')})`, 'unknown');
    }
    if (value === undefined) continue;
    const expected = rule(value, { owner, path: name });
    if (expected !== undefined) throw new InvalidOptionError(owner, name, value, expected);
  }
}

import { getMetadataStorage } from 'class-validator';

/**
 * A fast yes/no check compiled from a payload class's class-validator metadata.
 *
 * class-validator (with class-transformer's plainToInstance) costs several microseconds per
 * event, on every publish and again on every node that receives it. Almost every event is valid,
 * so the catalog first asks this compiled check; only when it says "invalid" (or the class uses a
 * decorator it does not know) does the catalog run class-validator, which stays the authority and
 * writes the error message. The check must therefore never accept what class-validator rejects;
 * a property test compares the two on generated payloads.
 */
export type FastCheck = (payload: Record<string, unknown>) => boolean;

type ValueCheck = (value: unknown) => boolean;

/** Length as validator.js's isLength counts it (a surrogate pair or a variation selector is not a character of its own). */
function isLengthCount(value: string): number {
  const presentation = value.match(/(\uFE0F|\uFE0E)/g)?.length ?? 0;
  const surrogatePairs = value.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0;
  return value.length - presentation - surrogatePairs;
}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** The class-validator constraints this module reproduces exactly, by constraint name. */
const CHECKS: Record<string, (constraints: unknown[]) => ValueCheck> = {
  isInt: () => (v) => typeof v === 'number' && Number.isInteger(v),
  isString: () => isStr,
  isBoolean: () => (v) => typeof v === 'boolean',
  isArray: () => Array.isArray,
  arrayNotEmpty: () => (v) => Array.isArray(v) && v.length > 0,
  min: ([min]) => (v) => typeof v === 'number' && typeof min === 'number' && v >= min,
  max: ([max]) => (v) => typeof v === 'number' && typeof max === 'number' && v <= max,
  isIn: ([values]) => (v) => Array.isArray(values) && values.some((allowed) => allowed === v),
  isLength: ([min, max]) => (v) => {
    if (!isStr(v)) return false;
    const n = isLengthCount(v);
    return n >= ((min as number) ?? 0) && (max === undefined || n <= (max as number));
  },
  maxLength: ([max]) => (v) => isStr(v) && isLengthCount(v) <= (max as number),
  minLength: ([min]) => (v) => isStr(v) && isLengthCount(v) >= (min as number),
  matches: ([pattern, modifiers]) => {
    const re = pattern instanceof RegExp ? pattern : new RegExp(String(pattern), modifiers as string | undefined);
    return (v) => isStr(v) && v.match(re) !== null;
  },
};

/** Compiles `cls`; undefined when its metadata uses something this module does not reproduce. */
export function compileFastCheck(cls: Function): FastCheck | undefined {
  const storage = getMetadataStorage();
  const metadatas = storage.getTargetValidationMetadatas(cls, '', true, false);
  const byProperty = new Map<string, { optional: boolean; checks: ValueCheck[] }>();
  for (const meta of metadatas) {
    if (meta.groups?.length) return undefined;
    const entry = byProperty.get(meta.propertyName) ?? { optional: false, checks: [] };
    byProperty.set(meta.propertyName, entry);
    if (meta.type === 'conditionalValidation' && meta.name === 'isOptional') {
      entry.optional = true;
      continue;
    }
    if (meta.type !== 'customValidation') return undefined;
    const names = storage.getTargetValidatorConstraints(meta.constraintCls).map((c) => c.name);
    const make = names.length === 1 ? CHECKS[names[0]!] : undefined;
    if (!make) return undefined;
    const check = make(meta.constraints ?? []);
    entry.checks.push(
      meta.each
        ? (v) => (Array.isArray(v) ? v.every(check) : check(v))
        : check,
    );
  }
  const properties = [...byProperty].map(([name, { optional, checks }]) => ({ name, optional, checks }));
  const allowed = new Set(byProperty.keys());
  return (payload) => {
    for (const key in payload) {
      if (!allowed.has(key)) return false;
    }
    for (const { name, optional, checks } of properties) {
      const value = payload[name];
      if (optional && (value === undefined || value === null)) continue;
      for (const check of checks) if (!check(value)) return false;
    }
    return true;
  };
}

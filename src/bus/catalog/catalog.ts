import 'reflect-metadata';
import { plainToInstance } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';
import { InvalidEventError, UnknownEventTypeError } from '../errors.js';
import { assertEventType } from '../subjects.js';
import { compileFastCheck, type FastCheck } from './fast-validator.js';

export type EventScopeKind = 'repo' | 'user' | 'site';

export type PayloadClass<P = object> = new () => P;

/** One (type, version) entry of the catalog. */
export interface EventDefinition<P extends object = object> {
  type: string;
  version: number;
  /** Whether the event is about a repository, addressed to a user, or site-wide. */
  scope: EventScopeKind;
  /** class-validator decorated class describing the payload. */
  payload: PayloadClass<P>;
}

/** Builds an EventDefinition with the payload type inferred. */
export function defineEvent<P extends object>(def: EventDefinition<P>): EventDefinition<P> {
  return def;
}

function firstErrorPath(errors: ValidationError[], prefix = 'payload'): { field: string; reason: string } {
  const first = errors[0]!;
  const field = `${prefix}.${first.property}`;
  if (first.constraints && Object.keys(first.constraints).length > 0) {
    return { field, reason: Object.values(first.constraints)[0]! };
  }
  if (first.children && first.children.length > 0) return firstErrorPath(first.children, field);
  return { field, reason: 'is invalid' };
}

const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The path of the first own `__proto__`, `constructor` or `prototype` key at any depth (JSON.parse
 * makes them own properties). class-transformer and class-validator's whitelist let them through,
 * and handlers that copy a payload could then change an object's prototype.
 */
function findPrototypeKey(payload: object): string | undefined {
  const stack: [unknown, string][] = [[payload, 'payload']];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    for (const key of Object.keys(value)) {
      if (PROTOTYPE_KEYS.has(key)) return `${path}.${key}`;
      stack.push([(value as Record<string, unknown>)[key], `${path}.${key}`]);
    }
  }
  return undefined;
}

/**
 * The registry of event types a process knows. Publishing validates against it; the feed drops
 * (and counts) messages whose type or version it does not know.
 */
interface CatalogEntry {
  def: EventDefinition;
  fastCheck: FastCheck | undefined;
}

export class EventCatalog {
  private readonly byType = new Map<string, { latest: CatalogEntry; versions: Map<number, CatalogEntry> }>();

  constructor(definitions: Iterable<EventDefinition> = []) {
    for (const def of definitions) this.register(def);
  }

  register(def: EventDefinition): this {
    assertEventType(def.type);
    if (!Number.isInteger(def.version) || def.version < 1) {
      throw new InvalidEventError('version', 'must be a positive integer', def.type);
    }
    const existing = this.byType.get(def.type);
    const previous = existing?.versions.get(def.version)?.def;
    if (previous && previous.payload !== def.payload) {
      throw new InvalidEventError('type', `is already registered at version ${def.version} with another payload class`, def.type);
    }
    const entry: CatalogEntry = { def, fastCheck: compileFastCheck(def.payload) };
    if (!existing) {
      this.byType.set(def.type, { latest: entry, versions: new Map([[def.version, entry]]) });
    } else {
      existing.versions.set(def.version, entry);
      if (def.version >= existing.latest.def.version) existing.latest = entry;
    }
    return this;
  }

  has(type: string, version?: number): boolean {
    const known = this.byType.get(type);
    return version === undefined ? known !== undefined : known?.versions.has(version) === true;
  }

  /** Highest registered version of `type`. */
  latestVersion(type: string): number {
    return this.entry(type).def.version;
  }

  /** The definition of `type` at `version` (default: the latest version). */
  get(type: string, version?: number): EventDefinition {
    return this.entry(type, version).def;
  }

  private entry(type: string, version?: number): CatalogEntry {
    const known = this.byType.get(type);
    if (!known) throw new UnknownEventTypeError(type);
    if (version === undefined) return known.latest;
    const entry = known.versions.get(version);
    if (!entry) throw new UnknownEventTypeError(type, version);
    return entry;
  }

  types(): string[] {
    return [...this.byType.keys()].sort();
  }

  /**
   * Validates a payload and returns it as a plain object (unknown properties rejected, so a
   * typo in a field name is an error rather than silently ignored data).
   */
  validatePayload(type: string, version: number, payload: unknown): object {
    const { def, fastCheck } = this.entry(type, version);
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new InvalidEventError('payload', 'must be an object', type);
    }
    const forbidden = findPrototypeKey(payload);
    if (forbidden) throw new InvalidEventError(forbidden, 'is not allowed (a prototype key)', type);
    // Fast path for the common case; class-validator decides (and explains) everything else.
    if (fastCheck?.(payload as Record<string, unknown>)) return payload;
    const instance = plainToInstance(def.payload, payload);
    const errors = validateSync(instance, { whitelist: true, forbidNonWhitelisted: true, forbidUnknownValues: false });
    if (errors.length > 0) {
      const { field, reason } = firstErrorPath(errors);
      throw new InvalidEventError(field, reason, type);
    }
    return payload;
  }
}

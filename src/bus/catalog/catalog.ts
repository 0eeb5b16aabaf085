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

/**
 * The registry of event types a process knows. Publishing validates against it; the feed drops
 * (and counts) messages whose type or version it does not know.
 */
export class EventCatalog {
  private readonly entries = new Map<string, { def: EventDefinition; fastCheck: FastCheck | undefined }>();
  private readonly latest = new Map<string, number>();

  constructor(definitions: Iterable<EventDefinition> = []) {
    for (const def of definitions) this.register(def);
  }

  register(def: EventDefinition): this {
    assertEventType(def.type);
    if (!Number.isInteger(def.version) || def.version < 1) {
      throw new InvalidEventError('version', 'must be a positive integer', def.type);
    }
    const key = `${def.type}@${def.version}`;
    const existing = this.entries.get(key)?.def;
    if (existing && existing.payload !== def.payload) {
      throw new InvalidEventError('type', `is already registered at version ${def.version} with another payload class`, def.type);
    }
    this.entries.set(key, { def, fastCheck: compileFastCheck(def.payload) });
    this.latest.set(def.type, Math.max(def.version, this.latest.get(def.type) ?? 0));
    return this;
  }

  has(type: string, version?: number): boolean {
    return version === undefined ? this.latest.has(type) : this.entries.has(`${type}@${version}`);
  }

  /** Highest registered version of `type`. */
  latestVersion(type: string): number {
    const version = this.latest.get(type);
    if (version === undefined) throw new UnknownEventTypeError(type);
    return version;
  }

  get(type: string, version: number): EventDefinition {
    return this.entry(type, version).def;
  }

  private entry(type: string, version: number) {
    const entry = this.entries.get(`${type}@${version}`);
    if (!entry) throw this.latest.has(type) ? new UnknownEventTypeError(type, version) : new UnknownEventTypeError(type);
    return entry;
  }

  types(): string[] {
    return [...this.latest.keys()].sort();
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

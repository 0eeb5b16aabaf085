/**
 * Typed errors of the forgebus core. Each carries a stable `code` so callers can branch
 * without matching message text, and a message that says what to do about it.
 */
export class ForgeBusError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An event (or envelope) failed validation; `field` names the first offending property path. */
export class InvalidEventError extends ForgeBusError {
  constructor(
    readonly field: string,
    reason: string,
    readonly eventType?: string,
  ) {
    super(
      'INVALID_EVENT',
      `invalid forge event${eventType ? ` "${eventType}"` : ''}: field "${field}" ${reason}`,
    );
  }
}

/** The event type (or its schema version) is not registered in the catalog. */
export class UnknownEventTypeError extends ForgeBusError {
  constructor(
    readonly eventType: string,
    readonly version?: number,
  ) {
    super(
      'UNKNOWN_EVENT_TYPE',
      version === undefined
        ? `unknown forge event type "${eventType}": register it with catalog.register(...) before publishing or subscribing`
        : `forge event type "${eventType}" has no schema version ${version}: register that version in the catalog`,
    );
  }
}

/** A name could not be turned into (or read back from) a subject token. */
export class SubjectCodecError extends ForgeBusError {
  constructor(message: string) {
    super('SUBJECT_CODEC', message);
  }
}

/** The running stream differs from the requested configuration in a way NATS cannot update. */
export class StreamConfigConflictError extends ForgeBusError {
  constructor(
    readonly stream: string,
    readonly fields: string[],
    detail: string,
  ) {
    super(
      'STREAM_CONFIG_CONFLICT',
      `stream ${stream} exists with a configuration that cannot be changed in place (${fields.join(', ')}): ${detail}. ` +
        `Either configure forgebus to match the running stream, or back up and delete the stream (nats stream rm ${stream}) so it is re-created.`,
    );
  }
}

/** JetStream answered a publish with an error, or nobody answered at all. */
export class PublishError extends ForgeBusError {
  constructor(
    readonly subject: string,
    message: string,
    options?: { cause?: unknown },
    code: 'PUBLISH_FAILED' | 'PUBLISH_QUEUE_FULL' = 'PUBLISH_FAILED',
  ) {
    super(code, message, options);
  }
}

/** No acknowledgement arrived within the deadline, after every retry. */
export class PublishTimeoutError extends ForgeBusError {
  constructor(
    readonly subject: string,
    readonly eventId: string,
    attempts: number,
    timeoutMs: number,
  ) {
    super(
      'PUBLISH_TIMEOUT',
      `no JetStream acknowledgement for event ${eventId} on ${subject} after ${attempts} attempt(s) of ${timeoutMs} ms: ` +
        `is the NATS server reachable and does the FORGE_EVENTS stream exist?`,
    );
  }
}

/** Configuration given to forgebus is unusable. */
export class ForgeBusConfigError extends ForgeBusError {
  constructor(message: string, code = 'CONFIG') {
    super(code, message);
  }
}

/**
 * One option of a public constructor is out of range, of the wrong kind, or unknown (a typo).
 * `owner` is the constructor (`SseHub`), `option` the option's path (`publisher.maxInFlight`).
 */
export class InvalidOptionError extends ForgeBusConfigError {
  constructor(
    readonly owner: string,
    readonly option: string,
    readonly value: unknown,
    readonly allowed: string,
    kind: 'invalid' | 'unknown' = 'invalid',
  ) {
    super(
      kind === 'unknown'
        ? `${owner}: unknown option "${option}": ${allowed}`
        : `${owner}: option "${option}" is ${describeValue(value)}; it must be ${allowed}`,
      kind === 'unknown' ? 'UNKNOWN_OPTION' : 'INVALID_OPTION',
    );
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** A stream message that is not a valid forge event (it is counted and dropped, never delivered). */
export class MalformedEventError extends ForgeBusError {
  constructor(reason: string) {
    super('MALFORMED_EVENT', reason);
  }
}

/** A handler's type pattern is not one forgebus understands. */
export class InvalidTypePatternError extends ForgeBusError {
  constructor(readonly pattern: string) {
    super('INVALID_TYPE_PATTERN', `event type pattern "${pattern}" must be "*", "<entity>.<action>", "<entity>.*" or "*.<action>"`);
  }
}

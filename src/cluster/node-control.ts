import { type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  checkOptions,
  consoleLogger,
  encodeToken,
  ForgeBusError,
  integer,
  logger,
  RateLimitedLog,
  type BusLogger,
  type ForgeBus,
  type OptionRules,
  inboxFor,
} from '../bus/index.js';
import type { Membership } from './membership.js';

/** `forge.node.<nodeId>.ctl.<verb>`: one node. */
export const nodeControlSubject = (nodeId: string, verb: string) => `forge.node.${encodeToken(nodeId)}.ctl.${verb}`;
/** `forge.nodes.ctl.<verb>`: every node (each answers, none is chosen). */
export const allNodesControlSubject = (verb: string) => `forge.nodes.ctl.${verb}`;

export type ControlHandler = (payload: unknown) => unknown;

export interface NodeControlOptions {
  /** How long a request waits for its answer (default 2 s). */
  timeoutMs?: number;
  logger?: BusLogger;
}

export const NODE_CONTROL_OPTION_RULES: OptionRules<NodeControlOptions> = {
  timeoutMs: integer(10, 600_000),
  logger,
};

/** No node with that id answers (it is not running, or never was). */
export class UnknownNodeError extends ForgeBusError {
  constructor(readonly nodeId: string) {
    super('UNKNOWN_NODE', `no node "${nodeId}" answers: it is not a live member of the cluster (GET /api/nodes lists them)`);
  }
}

/** The node did not answer in time. */
export class NodeControlTimeoutError extends ForgeBusError {
  constructor(
    readonly nodeId: string,
    readonly verb: string,
    timeoutMs: number,
  ) {
    super('NODE_CONTROL_TIMEOUT', `node "${nodeId}" did not answer "${verb}" within ${timeoutMs} ms: it may be overloaded or partitioned from NATS`);
  }
}

/** The node answered with an error (its handler failed, or it does not know the verb). */
export class NodeControlError extends ForgeBusError {
  constructor(
    readonly nodeId: string,
    readonly verb: string,
    readonly remoteCode: string,
    message: string,
  ) {
    super('NODE_CONTROL_FAILED', `node "${nodeId}" refused "${verb}": ${message}`);
  }
}

type Reply = { ok: true; nodeId: string; result: unknown } | { ok: false; nodeId: string; error: { code: string; message: string } };

export interface ScatterResult<R> {
  /** Answers, by node id. */
  replies: { nodeId: string; result: R }[];
  /** Nodes that answered with an error. */
  errors: { nodeId: string; code: string; message: string }[];
  /** Live members (when membership is known) that did not answer in time. */
  missing: string[];
}

const VERB = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/;

/**
 * Node-addressed control over NATS request/reply (ping, status, and whatever verbs the
 * application adds: listing and cancelling tasks). A request goes to one node
 * (`forge.node.<id>.ctl.<verb>`) or to all of them (`forge.nodes.ctl.<verb>`, answered by each);
 * a scatter ends as soon as every live member answered, or at the timeout. Plain core NATS, not
 * `@nats-io/services`: see docs/cluster.md for why.
 */
export class NodeControl {
  readonly nodeId: string;
  private readonly nc: NatsConnection;
  private readonly handlers = new Map<string, ControlHandler>();
  private readonly subscriptions: Subscription[] = [];
  private readonly timeoutMs: number;
  private readonly logger: BusLogger;
  private readonly errorLog: RateLimitedLog;
  private readonly startedAt = Date.now();
  readonly stats = { answered: 0, failed: 0 };

  constructor(
    bus: ForgeBus,
    private readonly membership?: Membership,
    options: NodeControlOptions = {},
  ) {
    checkOptions('NodeControl', options, NODE_CONTROL_OPTION_RULES);
    this.nc = bus.nc;
    this.nodeId = bus.nodeId;
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.logger = options.logger ?? consoleLogger;
    this.errorLog = new RateLimitedLog((m) => this.logger.warn(m));
    this.handle('ping', () => ({ nodeId: this.nodeId, uptimeMs: Date.now() - this.startedAt }));
    this.handle('status', () => ({
      nodeId: this.nodeId,
      uptimeMs: Date.now() - this.startedAt,
      member: this.membership?.members().find((m) => m.id === this.nodeId),
      verbs: [...this.handlers.keys()].sort(),
    }));
  }

  /** Answers `verb` on this node (a later handler for the same verb replaces the earlier one). */
  handle(verb: string, handler: ControlHandler): this {
    if (!VERB.test(verb)) throw new ForgeBusError('INVALID_VERB', `control verb "${verb}" must be lowercase words separated by dots, e.g. "tasks.cancel"`);
    this.handlers.set(verb, handler);
    return this;
  }

  /** Starts answering requests addressed to this node and to all nodes. */
  start(): void {
    if (this.subscriptions.length > 0) return;
    for (const subject of [`forge.node.${encodeToken(this.nodeId)}.ctl.>`, 'forge.nodes.ctl.>']) {
      this.subscriptions.push(
        this.nc.subscribe(subject, {
          callback: (err, msg) => {
            if (!err) void this.answer(msg);
          },
        }),
      );
    }
  }

  stop(): void {
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
  }

  /** Asks one node; resolves with its handler's result. */
  async request<R = unknown>(nodeId: string, verb: string, payload?: unknown, options: { timeoutMs?: number } = {}): Promise<R> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    let msg: Msg;
    try {
      msg = await this.nc.request(nodeControlSubject(nodeId, verb), JSON.stringify({ payload }), { timeout: timeoutMs });
    } catch (err) {
      const text = String((err as Error).message ?? err);
      if (/no responders|503/i.test(text) || (err as { code?: string }).code === '503') throw new UnknownNodeError(nodeId);
      if (/timeout/i.test(text)) throw new NodeControlTimeoutError(nodeId, verb, timeoutMs);
      throw new ForgeBusError('NODE_CONTROL_FAILED', `cannot ask node "${nodeId}": ${text}`, { cause: err });
    }
    const reply = msg.json<Reply>();
    if (!reply.ok) throw new NodeControlError(nodeId, verb, reply.error.code, reply.error.message);
    return reply.result as R;
  }

  /** Asks every node; collects answers until every live member answered or the timeout. */
  async scatter<R = unknown>(verb: string, payload?: unknown, options: { timeoutMs?: number } = {}): Promise<ScatterResult<R>> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const expected = this.membership ? new Set(this.membership.members().map((m) => m.id)) : undefined;
    const result: ScatterResult<R> = { replies: [], errors: [], missing: [] };
    const answered = new Set<string>();
    const inbox = inboxFor(this.nc);
    const sub = this.nc.subscribe(inbox);
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    this.nc.publish(allNodesControlSubject(verb), JSON.stringify({ payload }), { reply: inbox });
    for await (const msg of sub) {
      let reply: Reply;
      try {
        reply = msg.json<Reply>();
      } catch {
        continue;
      }
      if (answered.has(reply.nodeId)) continue;
      answered.add(reply.nodeId);
      if (reply.ok) result.replies.push({ nodeId: reply.nodeId, result: reply.result as R });
      else result.errors.push({ nodeId: reply.nodeId, ...reply.error });
      if (expected && [...expected].every((id) => answered.has(id))) break;
    }
    clearTimeout(timer);
    sub.unsubscribe();
    result.missing = expected ? [...expected].filter((id) => !answered.has(id)).sort() : [];
    result.replies.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
    result.errors.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
    return result;
  }

  private async answer(msg: Msg): Promise<void> {
    const verb = msg.subject.slice(msg.subject.indexOf('.ctl.') + 5);
    const respond = (reply: Reply) => {
      if (msg.reply) msg.respond(JSON.stringify(reply));
    };
    const handler = this.handlers.get(verb);
    if (!handler) {
      respond({ ok: false, nodeId: this.nodeId, error: { code: 'UNKNOWN_VERB', message: `unknown control verb "${verb}" (known: ${[...this.handlers.keys()].sort().join(', ')})` } });
      return;
    }
    try {
      const request = msg.data.length > 0 ? msg.json<{ payload?: unknown }>() : {};
      const result = await handler(request.payload);
      this.stats.answered++;
      respond({ ok: true, nodeId: this.nodeId, result });
    } catch (err) {
      this.stats.failed++;
      const code = err instanceof ForgeBusError ? err.code : 'HANDLER_FAILED';
      this.errorLog.line(`control "${verb}" failed: ${(err as Error).message}`);
      respond({ ok: false, nodeId: this.nodeId, error: { code, message: (err as Error).message } });
    }
  }
}

// Type-checked (strict) against the installed package: every entry point, used the way its docs
// say. It is compiled, not run: the runtime behaviour is proven by the ESM/CJS consumers.
import {
  CacheTags,
  DEFAULT_INVALIDATION_RULES,
  ForgeCache,
  type CacheState,
  type ForgeCacheOptions,
  type ForgeCacheStats,
  type InvalidationRule,
} from 'forgebus/cache';
import {
  defineEvent,
  encodeToken,
  eventSubject,
  EVENTS_STREAM,
  ForgeBus,
  ForgeBusConfigError,
  ForgeBusError,
  InvalidEventError,
  IssueDeletedEvent,
  OutboxRelay,
  parseEventSubject,
  ReplicasUnavailableError,
  silentLogger,
  type BusLogger,
  type DeliveredEvent,
  type EventEnvelope,
  type ForgeBusOptions,
  type ForgeEventPayloads,
  type OutboxRow,
  type OutboxStore,
  type PublishedEvent,
  type RepoRef,
  type ReplicasOption,
} from 'forgebus';
import {
  ForgeBusClient,
  ForgeBusHealthIndicator,
  ForgeBusModule,
  ForgeBusServer,
  ClusterModule,
  ForgeCacheModule,
  OnForgeEvent,
  RepoWriteHandler,
  RepoWritesModule,
  SseModule,
} from 'forgebus/nest';
import {
  PermanentWriteError,
  RepoWriteQueue,
  WriteFailedError,
  partitionOf,
  type RepoWriteContext,
  type RepoWriteQueueOptions,
} from 'forgebus/repo-writes';
import { InvalidLastEventIdError, SseHub, parseLastEventId, type SseAccessPolicy, type SseHubOptions, type SseStreamRequest } from 'forgebus/sse';
import { Membership, type MemberRecord, type MembershipChange } from 'forgebus/cluster';
import { IsString, MaxLength } from 'class-validator';

class WikiEdited {
  @IsString() @MaxLength(200) page!: string;
}
const wikiEdited = defineEvent({ type: 'wiki.edited', version: 1, scope: 'repo', payload: WikiEdited });

const replicas: ReplicasOption = 'auto';
const options: ForgeBusOptions = {
  nodeId: 'types',
  connection: { servers: 'nats://127.0.0.1:4222', user: 'forge-node', pass: 'secret', tls: { caFile: '/etc/nats/ca.pem' } },
  replicas,
  events: [wikiEdited],
  logger: silentLogger,
};
const repo: RepoRef = { owner: 'acme', name: 'web' };

export async function sdk(): Promise<void> {
  const bus = await ForgeBus.connect(options).catch((err: unknown) => {
    if (err instanceof ReplicasUnavailableError) console.error(err.code, err.replicas, err.servers);
    throw err;
  });
  const copies: number = bus.replicas;
  void copies;
  // A single built-in type gives the handler its payload type.
  bus.on('issue.deleted', ({ seq, envelope }) => {
    const n: number = envelope.payload.number;
    return [seq, n];
  });
  bus.on(['issue.*', 'repo.*'], (event: DeliveredEvent) => event.subject, { repo });
  const published: PublishedEvent<ForgeEventPayloads['issue.deleted']> = await bus.publish({ type: 'issue.deleted', repo, actor: 'alice', payload: { number: 3 } });
  const envelope: EventEnvelope = bus.events.create({ type: 'wiki.edited', repo, payload: { page: 'Home' } });
  await bus.publishEnvelope(envelope);
  const seq: number = published.seq;
  const subject: string = eventSubject('issue.deleted', { kind: 'repo', repo });
  void published.subject;
  const parsed = parseEventSubject(subject);
  const token: string = encodeToken('my.repo');
  const stats: number = bus.feed.stats.malformed + seq + (parsed ? 1 : 0) + token.length + EVENTS_STREAM.length;
  const logger: BusLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  void [stats, logger, IssueDeletedEvent];

  const rows: OutboxRow[] = [];
  const store: OutboxStore = {
    append: async (e: EventEnvelope) => {
      rows.push({ position: rows.length + 1, envelope: e });
    },
    pending: async (origin: string, orphanBefore: Date, limit: number) => rows.filter((r) => r.envelope.origin === origin || Date.parse(r.envelope.occurredAt) < orphanBefore.getTime()).slice(0, limit),
    remove: async (positions: number[]) => void positions,
  };
  const relay = new OutboxRelay(store, bus.publisher, bus.events, { batchSize: 100 });
  relay.start();
  await relay.stop();

  const cacheOptions: ForgeCacheOptions = { maxEntries: 1000, disconnectedReads: 'bypass' };
  const cache = new ForgeCache(bus, cacheOptions);
  const value: string = cache.getOrLoad('k', [CacheTags.issue(repo, 3), CacheTags.repo(repo)], () => 'v');
  const state: CacheState = cache.cacheState;
  const cacheStats: ForgeCacheStats = cache.stats;
  const rule: InvalidationRule | undefined = DEFAULT_INVALIDATION_RULES['issue.deleted'];
  void [value, state, cacheStats, rule];

  const queueOptions: RepoWriteQueueOptions = { partitions: 32 };
  const queue = new RepoWriteQueue(bus, queueOptions);
  await queue.init();
  queue.handle('commit', async (ctx: RepoWriteContext<{ message: string }>) => {
    if (!ctx.args.message) throw new PermanentWriteError('empty message', 400);
    return { sha: 'abc' };
  });
  await queue.startWorkers();
  try {
    const result = await queue.submit<{ sha: string }>(repo, 'commit', { message: 'hi' });
    void result.sha;
  } catch (err) {
    if (err instanceof WriteFailedError) void err.status;
  }
  void partitionOf(repo, queue.partitions);

  const policy: SseAccessPolicy = { canRead: async () => true, defaultRepos: async () => [repo], accessChange: () => undefined };
  const hubOptions: SseHubOptions = { heartbeatMs: 15_000 };
  const hub = new SseHub(bus, policy, hubOptions);
  hub.start();
  const request: SseStreamRequest = { user: 'alice', repos: [repo], defaultRepos: false, lastEventId: parseLastEventId('42') };
  void request;
  await hub.close();

  for (const err of [new InvalidLastEventIdError('x'), new ForgeBusConfigError('x')]) {
    if (err instanceof ForgeBusError) void err.code;
  }
  try {
    await bus.publish({ type: 'issue.deleted', repo, payload: { number: -1 } });
  } catch (err) {
    if (err instanceof InvalidEventError) void err.field;
  }
  const membership = new Membership(bus, { ttlMs: 15_000, roles: ['web'], address: () => 'http://127.0.0.1:3001', counters: () => ({ sseStreams: 0 }) });
  await membership.start();
  const members: MemberRecord[] = membership.members();
  membership.onChange((change: MembershipChange) => (change.type === 'left' ? change.id : change.member.id));
  void members;
  await membership.stop();

  await queue.stop();
  cache.close();
  await bus.close();
}

export class Writes {
  @RepoWriteHandler('commit')
  async commit(ctx: RepoWriteContext<{ message: string }>): Promise<string> {
    return ctx.args.message;
  }

  @OnForgeEvent('issue.*', { repo })
  onIssue(event: DeliveredEvent): number {
    return event.seq;
  }
}

export const nestModules = [
  ForgeBusModule.forRoot(options),
  ForgeBusModule.forRootAsync({ inject: [], useFactory: () => options }),
  ForgeCacheModule.forRoot({ maxEntries: 10 }),
  RepoWritesModule.forRoot({ workers: false }),
  SseModule.forRoot({ policy: 'POLICY' }),
  ClusterModule.forRoot({ ttlMs: 15_000 }),
];
export const nestTransport = [ForgeBusServer, ForgeBusClient, ForgeBusHealthIndicator];

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager, type StreamInfo } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ForgeCacheStats } from '../../src/cache/index.js';
import { apiClient, startForgeNode, tokenFor, type TestForgeNode } from '../support/forge-node.js';
import { eventually, startTestNats, type TestNats } from '../support/nats.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { openTestDatabase, type TestDatabase, type TestDatabaseKind } from '../support/database.js';

export type Api = ReturnType<typeof apiClient>;

export interface ClusterNode {
  index: number;
  process: TestForgeNode;
  /** alice's client on this node. */
  api: Api;
  /** Set when the node reaches NATS through a proxy that can cut it. */
  proxy?: TcpProxy;
  stats(): Promise<ForgeCacheStats>;
}

/**
 * A real nats-server, one shared data dir (repositories, and SQLite unless `database` is
 * postgres: then a real PostgreSQL server) and `count` forge node processes. Nodes listed in `proxied` reach NATS through their own TcpProxy (cut one node while
 * the server and the others keep running). Everything is stopped and removed by `dispose()`.
 */
export class Cluster {
  readonly nodes: ClusterNode[] = [];
  private nc?: NatsConnection;
  database?: TestDatabase;

  private constructor(
    readonly nats: TestNats,
    readonly dataDir: string,
  ) {}

  static async start(options: { count?: number; env?: Record<string, string>; proxied?: number[]; database?: TestDatabaseKind } = {}): Promise<Cluster> {
    const cluster = new Cluster(await startTestNats(), mkdtempSync(join(tmpdir(), 'forgebus-cache-data-')));
    try {
      cluster.database = await openTestDatabase(options.database ?? 'sqlite', cluster.dataDir);
      const env = { ...options.env, ...cluster.database.env };
      const token = await tokenFor('alice');
      const count = options.count ?? 3;
      // One at a time: the first one provisions the stream, and start-up is CPU-heavy.
      for (let index = 1; index <= count; index++) {
        const proxy = options.proxied?.includes(index) ? await TcpProxy.start(cluster.nats.port) : undefined;
        const node = { index, proxy } as ClusterNode;
        cluster.nodes.push(node);
        node.process = await startForgeNode({ id: `cache-node-${index}`, natsUrl: proxy?.url ?? cluster.nats.url, dataDir: cluster.dataDir, env });
        node.api = apiClient(node.process.url, token);
        node.stats = async () => {
          const res = await node.api('GET', '/api/cache/stats');
          if (res.status !== 200) throw new Error(`GET /api/cache/stats on node ${index}: ${res.status} ${JSON.stringify(res.body)}`);
          return res.body as ForgeCacheStats;
        };
      }
      cluster.nc = await connect({ servers: cluster.nats.url, name: 'cache-test-observer' });
      return cluster;
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
  }

  node(index: number): ClusterNode {
    return this.nodes[index - 1]!;
  }

  /** FORGE_EVENTS as the server has it now. */
  async streamInfo(): Promise<StreamInfo> {
    return (await jetstreamManager(this.nc!)).streams.info('FORGE_EVENTS');
  }

  async streamState(): Promise<StreamInfo['state']> {
    return (await this.streamInfo()).state;
  }

  /** Waits until the stream holds at least `seq` events and every node (of `nodes`) applied them. */
  async settled(seq: number, nodes: ClusterNode[] = this.nodes, timeoutMs = 10_000): Promise<void> {
    await eventually(async () => (await this.streamState()).last_seq >= seq, timeoutMs, `the stream to reach sequence ${seq}`);
    await eventually(
      async () => (await Promise.all(nodes.map((n) => n.stats()))).every((s) => s.lastAppliedSeq >= seq),
      timeoutMs,
      `every node to apply sequence ${seq}`,
    );
  }

  /** Waits until every event recorded so far is in the stream and applied on every node (of `nodes`); returns its sequence. */
  async settleAll(nodes: ClusterNode[] = this.nodes, timeoutMs = 10_000): Promise<number> {
    // The outbox relays after the commit: wait until nothing is left in it.
    await eventually(async () => (await this.query<{ n: number }>('SELECT CAST(COUNT(*) AS INTEGER) AS n FROM outbox'))!.n === 0, timeoutMs, 'the outbox to drain');
    const seq = (await this.streamState()).last_seq;
    await this.settled(seq, nodes, timeoutMs);
    return seq;
  }

  /** Reads a row straight from the shared database (the truth, bypassing every node). */
  query<T>(sql: string, ...params: unknown[]): Promise<T | undefined> {
    return this.database!.query<T>(sql, params);
  }

  async dispose(): Promise<void> {
    await this.nc?.close().catch(() => undefined);
    await Promise.all(this.nodes.map((n) => n.process?.stop()));
    await Promise.all(this.nodes.map((n) => n.proxy?.close()));
    await this.nats.dispose();
    await this.database?.dispose();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Issue title as a node answers it; `404` when it answers not found. */
export async function titleOn(node: ClusterNode, path: string): Promise<string | 404> {
  const res = await node.api('GET', path);
  if (res.status === 404) return 404;
  if (res.status !== 200) throw new Error(`GET ${path} on node ${node.index}: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { title: string }).title;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startLocalNats, waitForJetStream, type LocalNats, type LocalNatsOptions } from '../../src/ops/local-nats.js';
import { eventually } from './nats.js';

export interface TestNatsCluster extends LocalNats {
  dir: string;
  /** Connection options of the forge-node user (empty without auth). */
  forgeAuth: { user?: string; pass?: string };
  /** Stops every server and removes the directory. */
  dispose(): Promise<void>;
  /** The server that leads a stream's RAFT group now (from the stream's cluster info). */
  streamLeader(stream: string): Promise<string>;
  /** The JetStream meta leader (from /jsz of a running server). */
  metaLeader(): Promise<string>;
  /** Waits until every replica of `stream` is current (after a restart the server catches up). */
  waitCurrent(stream: string, timeoutMs?: number): Promise<void>;
  server(name: string): LocalNats['servers'][number];
}

/** Three (or `servers`) clustered nats-servers with JetStream on free loopback ports, in a temp dir. */
export async function startTestNatsCluster(options: Partial<LocalNatsOptions> = {}): Promise<TestNatsCluster> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'forgebus-natscluster-'));
  const nats = await startLocalNats({ servers: 3, auth: false, ...options, dir });
  await waitForJetStream(nats);
  const forgeAuth = nats.credentials ? { user: nats.credentials.forge.user, pass: nats.credentials.forge.password } : {};
  const admin = async <T>(run: (nc: NatsConnection) => Promise<T>): Promise<T> => {
    const nc = await connect({ servers: nats.servers.filter((s) => s.running).map((s) => s.url), ...forgeAuth });
    try {
      return await run(nc);
    } finally {
      await nc.close();
    }
  };
  const cluster: TestNatsCluster = {
    ...nats,
    dir,
    forgeAuth,
    async dispose() {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    streamLeader: (stream) =>
      eventually(
        () => admin(async (nc) => (await (await jetstreamManager(nc)).streams.info(stream)).cluster?.leader),
        20_000,
        `a leader of ${stream}`,
      ),
    async metaLeader() {
      return eventually(
        async () => {
          for (const s of nats.servers.filter((x) => x.running && x.monitorUrl)) {
            const jsz = (await (await fetch(`${s.monitorUrl}/jsz`)).json()) as { meta_cluster?: { leader?: string } };
            if (jsz.meta_cluster?.leader) return jsz.meta_cluster.leader;
          }
          return undefined;
        },
        20_000,
        'a JetStream meta leader',
      );
    },
    async waitCurrent(stream, timeoutMs = 30_000) {
      await eventually(
        () =>
          admin(async (nc) => {
            const info = await (await jetstreamManager(nc)).streams.info(stream);
            const replicas = info.cluster?.replicas ?? [];
            return info.cluster?.leader !== undefined && replicas.length === info.config.num_replicas - 1 && replicas.every((r) => r.current && !r.offline);
          }),
        timeoutMs,
        `every replica of ${stream} current`,
      );
    },
    server(name) {
      const found = nats.servers.find((s) => s.name === name);
      if (!found) throw new Error(`no server ${name} (have ${nats.servers.map((s) => s.name).join(', ')})`);
      return found;
    },
  };
  return cluster;
}

/**
 * SSE bench, a bench-only server process for two diagnostic measurements next to the real forge
 * node (forked by bench/case-sse.ts; argv: NATS url, variant):
 *
 *   hub     `SseHub` (src/sse) on a plain `node:http` server: no NestJS, no Express, no token
 *           check, a policy that allows everything. Started with --expose-gc, it reports its
 *           heap after a full collection: the exact heap cost of a connection in the hub plus
 *           node:http, which the forge node (no heap endpoint) cannot give.
 *   persub  the design issue 4 forbids: one core-NATS subscription per client
 *           (`forge.repo.<owner>.<name>.>`), each writing every message it gets to its own HTTP
 *           response as an SSE frame. The baseline of case sse-fanout.
 *   floor   what the write side could cost at best in Node (diagnostic for sse-fanout): one
 *           core-NATS subscription for the process, an index from repository to sockets, each
 *           event framed once (SSE frame and its HTTP chunk header in one Buffer) and written
 *           with `socket.write` to every socket of its repository, bypassing ServerResponse.
 *
 * Both serve `GET /api/events?repos=owner/name[,owner/name]&user=<name>` and answer with the same
 * headers and frame format as the forge node (the persub variant has no stream sequence on a
 * core message: its ids count per process).
 *
 * Protocol (fork IPC): child -> parent { ready, pid, port }; parent -> child { mem } -> { mem,
 * rss, heapUsed, heapTotal, external, arrayBuffers, clients }; { stats } -> { stats, ... }; { stop }.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { ForgeBus } from '../src/bus/bus.js';
import type { BusLogger } from '../src/bus/logger.js';
import { repoSubjectFilter, type RepoRef } from '../src/bus/subjects.js';
import { SseHub } from '../src/sse/hub.js';
import { childArgs, sendToParent, type AnyMessage } from './common.js';

const { url } = childArgs();
const variant = process.argv[3] === 'persub' || process.argv[3] === 'floor' ? process.argv[3] : 'hub';

function parse(req: IncomingMessage): { repos: RepoRef[]; user: string } | undefined {
  const u = new URL(req.url ?? '/', 'http://x');
  if (u.pathname !== '/api/events') return undefined;
  const repos = (u.searchParams.get('repos') ?? '')
    .split(',')
    .filter(Boolean)
    .map((p) => {
      const [owner, name] = p.split('/');
      return { owner: owner!, name: name! };
    });
  return { repos, user: u.searchParams.get('user') ?? 'bench' };
}

const HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

let bus: ForgeBus | undefined;
let hub: SseHub | undefined;
let nc: NatsConnection | undefined;
let perSubClients = 0;
let perSubDeliveries = 0;
const subs = new Set<Subscription>();

const quietLogger: BusLogger = { log: () => undefined, warn: (m) => console.error(m), error: (m) => console.error(m) };

let handler: (req: IncomingMessage, res: ServerResponse) => void;

/** The baselines' stream start (no ids, no resume): 404 for a bad request, else headers and retry. */
function openBaselineStream(req: IncomingMessage, res: ServerResponse): ReturnType<typeof parse> {
  const r = parse(req);
  if (!r) {
    res.writeHead(404).end();
    return r;
  }
  res.writeHead(200, HEADERS);
  res.write('retry: 2000\n\n');
  perSubClients++;
  return r;
}

if (variant === 'hub') {
  bus = await ForgeBus.connect({ nodeId: `bench-sse-hub-${process.pid}`, connection: { servers: url } });
  hub = new SseHub(
    bus,
    {
      canRead: async () => true,
      defaultRepos: async () => [],
      accessChange: () => undefined,
    },
    { heartbeatMs: Number(process.argv[4] ?? 15_000), logger: quietLogger },
  );
  hub.start();
  await bus.start();
  handler = (req, res) => {
    const r = parse(req);
    if (!r) {
      res.writeHead(404).end();
      return;
    }
    hub!.open(res, { user: r.user, repos: r.repos, defaultRepos: false });
  };
} else if (variant === 'floor') {
  nc = await connect({ servers: url, name: 'bench-sse-floor' });
  const sockets = new Map<string, Set<Socket>>();
  let nextId = 1;
  nc.subscribe('forge.repo.>', {
    callback: (err, msg) => {
      if (err) return;
      // forge.repo.<owner>.<name>.<entity>.<action>
      const parts = msg.subject.split('.');
      const members = sockets.get(`${parts[2]}/${parts[3]}`);
      if (!members) return;
      const body = Buffer.concat([Buffer.from(`id: ${nextId++}\nevent: ${parts[4]}.${parts[5]}\ndata: `), msg.data, Buffer.from('\n\n')]);
      const chunk = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n')]);
      for (const socket of members) {
        perSubDeliveries++;
        socket.write(chunk);
      }
    },
  });
  handler = (req, res) => {
    const r = openBaselineStream(req, res);
    if (!r) return;
    const socket = res.socket!;
    for (const repo of r.repos) {
      const key = `${repo.owner}/${repo.name}`;
      let set = sockets.get(key);
      if (!set) sockets.set(key, (set = new Set()));
      set.add(socket);
    }
    res.once('close', () => {
      perSubClients--;
      for (const repo of r.repos) sockets.get(`${repo.owner}/${repo.name}`)?.delete(socket);
    });
  };
} else {
  nc = await connect({ servers: url, name: 'bench-sse-persub' });
  const NLNL = Buffer.from('\n\n');
  let nextId = 1;
  handler = (req, res) => {
    const r = openBaselineStream(req, res);
    if (!r) return;
    const mine: Subscription[] = r.repos.map((repo) =>
      nc!.subscribe(repoSubjectFilter(repo), {
        callback: (err, msg) => {
          if (err) return;
          const dot = msg.subject.indexOf('.', msg.subject.indexOf('.', msg.subject.indexOf('.', msg.subject.indexOf('.') + 1) + 1) + 1);
          const type = msg.subject.slice(dot + 1);
          perSubDeliveries++;
          res.write(Buffer.concat([Buffer.from(`id: ${nextId++}\nevent: ${type}\ndata: `), msg.data, NLNL]));
        },
      }),
    );
    for (const s of mine) subs.add(s);
    res.once('close', () => {
      perSubClients--;
      for (const s of mine) {
        s.unsubscribe();
        subs.delete(s);
      }
    });
  };
}

const server = createServer(handler);
server.keepAliveTimeout = 0;
server.listen(0, '127.0.0.1', 2048, () => {
  sendToParent({ type: 'ready', pid: process.pid, port: (server.address() as AddressInfo).port });
});

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();

function vmRss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function stop(): Promise<void> {
  await hub?.close().catch(() => undefined);
  for (const s of subs) s.unsubscribe();
  server.closeAllConnections();
  server.close();
  await bus?.close().catch(() => undefined);
  await nc?.close().catch(() => undefined);
  process.exit(0);
}

process.on('message', (raw) => {
  const m = raw as AnyMessage;
  switch (m.type) {
    case 'mem': {
      const loopMaxMs = loop.max / 1e6;
      const loopP99Ms = loop.percentile(99) / 1e6;
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      const mu = process.memoryUsage();
      sendToParent({
        type: 'mem',
        rss: vmRss(),
        heapUsed: mu.heapUsed,
        heapTotal: mu.heapTotal,
        external: mu.external,
        arrayBuffers: mu.arrayBuffers,
        clients: hub ? hub.stats.clients : perSubClients,
        gc: gc !== undefined,
        loopMaxMs,
        loopP99Ms,
      });
      // The late timer tick of this GC lands in the next window: drop it.
      setTimeout(() => loop.reset(), 20);
      break;
    }
    case 'port':
      sendToParent({ type: 'port', port: (server.address() as AddressInfo).port });
      break;
    case 'stats':
      sendToParent({ type: 'stats', ...(hub ? hub.stats : { clients: perSubClients, deliveries: perSubDeliveries, slowDisconnects: 0 }) });
      break;
    case 'stop':
      void stop();
      break;
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());

/**
 * SSE bench, the client side: one process that holds many `GET /api/events` streams open over raw
 * TCP sockets (node:net, HTTP/1.1, the server's chunked encoding left undecoded) and parses the
 * frames cheaply. Forked by bench/case-sse.ts (argv: the NATS url), so that the clients' CPU is
 * not the bench's and not the node's.
 *
 * Two ways of reading a stream:
 *   count    counts event frames only: every `}\n\n` (a frame is one write, so one HTTP chunk,
 *            and its data line is one line of JSON; chunk framing never makes `\n\n`;
 *            heartbeats `:\n\n` and the preamble `id: 7\n\n` do not end in `}`). One native
 *            `indexOf` per frame.
 *   latency  also finds `"title":"T<ms>"` in each frame (the publisher puts its clock there) and
 *            records now - then, in ms, with `performance.timeOrigin + performance.now()`.
 * The same process can also receive the published messages as a raw core-NATS subscriber and as
 * a raw JetStream ordered consumer (the transport baselines of case sse-latency), with the same
 * parser and clock.
 *
 * Protocol (fork IPC), parent -> child / child -> parent:
 *   { open, host, port, paths, tokens, tokenOf, mode, concurrency }  -> { opened, ok, failed, errors, ms }
 *   { nats, subject, ordered }                                      -> { nats-ready }
 *   { reset }                                                       -> { reset-done }   counters and samples cleared
 *   { counts }                                                      -> { counts, frames, core, js, closed, cpuUs, at }
 *   { report, all }                                                 -> { report, sse, core, js, ... } latency summaries
 *   { clock }                                                       -> { clock, perf, mono }
 *   { close }                                                       -> { closed-all }   every socket destroyed
 *   { stop }                                                        (exits)
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { DeliverPolicy, jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { childArgs, percentile, sendToParent, type AnyMessage } from './common.js';

const { url } = childArgs();

const NLNL = Buffer.from('\n\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** The publisher's clock, in the issue title: `"title":"T1712345678901.123"`. */
const TITLE = Buffer.from('"title":"T');
const QUOTE = 0x22;
const NL = 0x0a;
const BRACE = 0x7d;

const clock = (): number => performance.timeOrigin + performance.now();

/** A growable list of latencies (ms). */
class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
  clear(): void {
    this.length = 0;
  }
}

type Mode = 'count' | 'latency';

interface Conn {
  socket: Socket;
  /** Status line and headers read. */
  open: boolean;
  /** Bytes before the end of headers (rare: headers split over reads), or an incomplete frame. */
  tail: Buffer | undefined;
  /** Count mode: the last read ended in a `\n` not yet paired (a `\n\n` may straddle two reads). */
  lastNl: boolean;
  /** Count mode: the byte before that `\n`, and the last byte read. */
  beforeNl: number;
  lastByte: number;
}

const conns: Conn[] = [];
let mode: Mode = 'count';
/** Event frames received on the SSE streams since the last reset. */
let frames = 0;
/** Streams that ended while they should have stayed open. */
let closedUnexpectedly = 0;
let closing = false;
const sse = new Samples();
const core = new Samples();
const js = new Samples();
let coreCount = 0;
let jsCount = 0;
/** Titles that could not be parsed (must stay 0). */
let badTitles = 0;
let cpuAtReset = process.cpuUsage();

/** The publisher's time from a title at `at` (just after `"title":"T`), or NaN. */
function titleTime(buf: Buffer, at: number): number {
  const end = buf.indexOf(QUOTE, at);
  if (end < 0) return NaN;
  return Number(buf.toString('latin1', at, end));
}

function onBody(conn: Conn, buf: Buffer): void {
  if (mode === 'count') {
    // An event frame ends in `}\n\n` (its data is JSON); heartbeats (`:\n\n`) and the
    // preamble (`id: 7\n\n`) do not. A `\n\n` may straddle two reads.
    const last = buf.length - 1;
    let n = 0;
    let pos = 0;
    if (conn.lastNl && buf[0] === NL) {
      if (conn.beforeNl === BRACE) n++;
      pos = 1;
    }
    for (;;) {
      const i = buf.indexOf(NLNL, pos);
      if (i < 0) break;
      if ((i > 0 ? buf[i - 1] : conn.lastByte) === BRACE) n++;
      pos = i + 2;
    }
    frames += n;
    conn.lastNl = buf[last] === NL && pos <= last;
    conn.beforeNl = last >= 1 ? buf[last - 1]! : conn.lastByte;
    conn.lastByte = buf[last]!;
    return;
  }
  if (conn.tail) {
    buf = Buffer.concat([conn.tail, buf]);
    conn.tail = undefined;
  }
  const t = clock();
  let pos = 0;
  for (;;) {
    const end = buf.indexOf(NLNL, pos);
    if (end < 0) {
      if (pos < buf.length) conn.tail = Buffer.from(buf.subarray(pos));
      return;
    }
    const at = buf.indexOf(TITLE, pos);
    if (at >= 0 && at < end) {
      const sent = titleTime(buf, at + TITLE.length);
      if (Number.isFinite(sent)) sse.push(t - sent);
      else badTitles++;
      frames++;
    } else if (buf.indexOf('data:', pos) >= 0 && buf.indexOf('data:', pos) < end) {
      frames++; // an event without our title (another type): counted, no latency
    }
    pos = end + 2;
  }
}

function openOne(host: string, port: number, path: string, token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port });
    const conn: Conn = { socket, open: false, tail: undefined, lastNl: false, beforeNl: 0, lastByte: 0 };
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(err);
    };
    socket.on('error', (err) => fail(err));
    socket.on('close', () => {
      if (!settled) fail(new Error('closed before the response'));
      else if (!closing) closedUnexpectedly++;
    });
    socket.on('data', (chunk: Buffer) => {
      if (conn.open) return onBody(conn, chunk);
      const buf = conn.tail ? Buffer.concat([conn.tail, chunk]) : chunk;
      conn.tail = undefined;
      const end = buf.indexOf(HEADER_END);
      if (end < 0) {
        conn.tail = Buffer.from(buf);
        return;
      }
      const status = buf.toString('latin1', 0, buf.indexOf('\r\n'));
      if (!/^HTTP\/1\.1 200 /.test(status)) {
        const body = buf.toString('latin1', end + 4, Math.min(buf.length, end + 300));
        return fail(new Error(`${status}: ${body}`));
      }
      conn.open = true;
      conns.push(conn);
      settled = true;
      resolve();
      // The preamble (retry:, id:) usually arrives with the headers; it is not counted as an event.
      const rest = buf.subarray(end + 4);
      if (rest.length > 0) onBody(conn, rest);
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  });
}

async function openAll(m: AnyMessage): Promise<void> {
  const host = m.host as string;
  const port = m.port as number;
  const paths = m.paths as string[];
  const tokens = m.tokens as string[];
  const tokenOf = m.tokenOf as number[];
  const concurrency = (m.concurrency as number | undefined) ?? 64;
  mode = m.mode as Mode;
  const t0 = performance.now();
  let next = 0;
  let ok = 0;
  let failed = 0;
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const i = next++;
      try {
        await openOne(host, port, paths[i]!, tokens[tokenOf[i]!]!);
        ok++;
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  sendToParent({ type: 'opened', ok, failed, errors, ms: performance.now() - t0, total: conns.length });
}

// ---- the transport baselines: the same published messages, straight from NATS ----------------

let nc: NatsConnection | undefined;
let sub: Subscription | undefined;
let ordered: ConsumerMessages | undefined;

function recordMessage(into: Samples, data: Uint8Array): void {
  const t = clock();
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const at = buf.indexOf(TITLE);
  if (at < 0) return;
  const sent = titleTime(buf, at + TITLE.length);
  if (Number.isFinite(sent)) into.push(t - sent);
  else badTitles++;
}

async function startNats(m: AnyMessage): Promise<void> {
  nc = await connect({ servers: url, name: 'bench-sse-clients' });
  sub = nc.subscribe(m.subject as string, {
    callback: (err, msg) => {
      if (err) return;
      coreCount++;
      recordMessage(core, msg.data);
    },
  });
  if (m.ordered) {
    const consumer = await jetstream(nc).consumers.get(m.stream as string, { deliver_policy: DeliverPolicy.New });
    ordered = await consumer.consume({
      max_messages: 1024,
      callback: (msg) => {
        jsCount++;
        recordMessage(js, msg.data);
      },
    });
  }
  await nc.flush();
  sendToParent({ type: 'nats-ready' });
}

function summary(s: Samples) {
  const v = s.sorted();
  return {
    n: v.length,
    p50: percentile(v, 0.5),
    p90: percentile(v, 0.9),
    p99: percentile(v, 0.99),
    p999: percentile(v, 0.999),
    max: v.length ? v[v.length - 1]! : NaN,
    min: v.length ? v[0]! : NaN,
  };
}

function reset(): void {
  frames = 0;
  coreCount = 0;
  jsCount = 0;
  badTitles = 0;
  sse.clear();
  core.clear();
  js.clear();
  cpuAtReset = process.cpuUsage();
}

const cpuUs = (): number => {
  const c = process.cpuUsage(cpuAtReset);
  return c.user + c.system;
};

async function stop(): Promise<void> {
  closing = true;
  for (const c of conns) c.socket.destroy();
  sub?.unsubscribe();
  await ordered?.close();
  await nc?.close().catch(() => undefined);
  process.exit(0);
}

process.on('message', (raw) => {
  const m = raw as AnyMessage;
  switch (m.type) {
    case 'open':
      closing = false;
      openAll(m).catch((err: unknown) => sendToParent({ type: 'error', message: String(err) }));
      break;
    case 'nats':
      startNats(m).catch((err: unknown) => sendToParent({ type: 'error', message: String(err) }));
      break;
    case 'reset':
      reset();
      sendToParent({ type: 'reset-done' });
      break;
    case 'counts':
      sendToParent({
        type: 'counts',
        frames,
        core: coreCount,
        js: jsCount,
        latencies: sse.length,
        closed: closedUnexpectedly,
        conns: conns.length,
        cpuUs: cpuUs(),
        at: clock(),
      });
      break;
    case 'report':
      sendToParent({
        type: 'report',
        frames,
        core: coreCount,
        js: jsCount,
        badTitles,
        closed: closedUnexpectedly,
        cpuUs: cpuUs(),
        sse: summary(sse),
        coreLatency: summary(core),
        jsLatency: summary(js),
      });
      break;
    case 'clock':
      sendToParent({ type: 'clock', perf: clock(), mono: Number(process.hrtime.bigint()) / 1e6 });
      break;
    case 'close':
      closing = true;
      for (const c of conns) c.socket.destroy();
      conns.length = 0;
      sendToParent({ type: 'closed-all' });
      break;
    case 'stop':
      void stop();
      break;
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
sendToParent({ type: 'ready', pid: process.pid });

import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventEnvelope } from '../../src/bus/index.js';
import type { BusLogger } from '../../src/bus/logger.js';

/** One message as stored in a stream. */
export interface StoredEvent {
  seq: number;
  subject: string;
  envelope: EventEnvelope;
}

const decoder = new TextDecoder();

/**
 * Reads every message the stream holds right now, in stream order, through a fresh ordered
 * consumer (independent of the code under test).
 */
export async function readStream(nc: NatsConnection, stream = 'FORGE_EVENTS'): Promise<StoredEvent[]> {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  if (info.state.messages === 0) return [];
  const lastSeq = info.state.last_seq;
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 512 });
  const out: StoredEvent[] = [];
  const timer = setTimeout(() => void messages.close(), 15_000);
  try {
    for await (const m of messages) {
      out.push({ seq: m.seq, subject: m.subject, envelope: JSON.parse(decoder.decode(m.data)) as EventEnvelope });
      if (m.seq >= lastSeq) break;
    }
  } finally {
    clearTimeout(timer);
    await messages.close().catch(() => undefined);
  }
  if (out.at(-1)?.seq !== lastSeq) throw new Error(`readStream: stopped at ${out.at(-1)?.seq}, expected last seq ${lastSeq}`);
  return out;
}

/** A logger that keeps what it is told (tests assert on it and keep the output clean). */
export class MemoryLogger implements BusLogger {
  readonly lines: { level: 'log' | 'warn' | 'error'; message: string }[] = [];
  log(message: string): void {
    this.lines.push({ level: 'log', message });
  }
  warn(message: string): void {
    this.lines.push({ level: 'warn', message });
  }
  error(message: string): void {
    this.lines.push({ level: 'error', message });
  }
  matching(re: RegExp): string[] {
    return this.lines.map((l) => l.message).filter((m) => re.test(m));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

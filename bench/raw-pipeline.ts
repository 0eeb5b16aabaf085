import { randomUUID } from 'node:crypto';
import { createInbox, headers, type NatsConnection } from '@nats-io/transport-node';
import { EVENTS_STREAM } from '../src/bus/streams.js';

const decoder = new TextDecoder();

/**
 * Floor for an acknowledged JetStream publisher written directly on nats.js: the same wire work
 * as the SDK's EventPublisher (core publish with a reply subject under one inbox subscription,
 * Nats-Msg-Id = a fresh UUID, Nats-Expected-Stream, each ack parsed and checked) but no envelope,
 * no validation, no retry timer and no promise per event. Used only by the diagnostic rows
 * c0/d0, to show how much of the gap to a target is the server and how much is the SDK's JS.
 */
export function pipelinedPublish(nc: NatsConnection, subject: string, data: Uint8Array, n: number, window: number): Promise<void> {
  if (n <= 0) return Promise.resolve();
  const inbox = createInbox();
  let sent = 0;
  let acked = 0;
  return new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (sent < n && sent - acked < window) {
        const h = headers();
        h.set('Nats-Msg-Id', randomUUID());
        h.set('Nats-Expected-Stream', EVENTS_STREAM);
        nc.publish(subject, data, { reply: `${inbox}.${(sent++).toString(36)}`, headers: h });
      }
    };
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (err) {
          reject(err);
          return;
        }
        const ack = msg.headers?.code === 503 ? undefined : (JSON.parse(decoder.decode(msg.data)) as { seq?: number; error?: unknown });
        if (!ack || ack.error || typeof ack.seq !== 'number') {
          sub.unsubscribe();
          reject(new Error(`JetStream refused a publish: ${ack ? JSON.stringify(ack) : 'no responders'}`));
          return;
        }
        if (++acked === n) {
          sub.unsubscribe();
          resolve();
        } else pump();
      },
    });
    pump();
  });
}

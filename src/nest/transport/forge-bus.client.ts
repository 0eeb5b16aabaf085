import { createInbox } from '@nats-io/transport-node';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { ForgeBus, type EventInput, type ForgeBusOptions } from '../../bus/index.js';
import { rpcSubject } from './rpc.js';

export type ForgeBusClientOptions = ({ bus: ForgeBus } | ForgeBusOptions) & {
  /** How long `send()` waits for the first reply (default 10 s). */
  requestTimeoutMs?: number;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * ClientProxy over forgebus. `emit(type, { repo, payload, actor })` publishes a forge event
 * (validated, persisted in FORGE_EVENTS); `send(pattern, data)` is a request answered by one
 * node's `@MessagePattern(pattern)` handler.
 */
export class ForgeBusClient extends ClientProxy {
  private bus?: ForgeBus;
  private ownsBus = false;
  private connecting?: Promise<ForgeBus>;

  constructor(private readonly options: ForgeBusClientOptions) {
    super();
  }

  connect(): Promise<ForgeBus> {
    this.connecting ??= (async () => {
      if ('bus' in this.options) {
        this.bus = this.options.bus;
      } else {
        this.bus = await ForgeBus.connect({ ...this.options, feed: undefined });
        this.ownsBus = true;
      }
      return this.bus;
    })();
    return this.connecting;
  }

  async close(): Promise<void> {
    if (this.ownsBus) await this.bus?.close();
    this.connecting = undefined;
  }

  unwrap<T>(): T {
    if (!this.bus) throw new Error('ForgeBusClient is not connected: call connect() first');
    return this.bus as T;
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    let settled = false;
    let unsubscribe = () => {};
    const finish = (reply: WritePacket) => {
      if (settled) return;
      if (reply.isDisposed || reply.err !== undefined) {
        settled = true;
        unsubscribe();
      }
      callback(reply);
    };
    void this.connect()
      .then((bus) => {
        const { id } = this.assignPacketId(packet);
        const pattern = this.normalizePattern(packet.pattern);
        const inbox = createInbox();
        const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
        const timer = setTimeout(
          () => finish({ err: `no reply to "${pattern}" within ${timeoutMs} ms`, isDisposed: true }),
          timeoutMs,
        );
        const sub = bus.nc.subscribe(inbox, {
          callback: (err, msg) => {
            clearTimeout(timer);
            if (err) return finish({ err: err.message, isDisposed: true });
            if (msg.headers?.code === 503) {
              return finish({ err: `no forgebus node handles "${pattern}" (no responders)`, isDisposed: true });
            }
            try {
              finish(JSON.parse(decoder.decode(msg.data)) as WritePacket);
            } catch {
              finish({ err: `unreadable reply to "${pattern}"`, isDisposed: true });
            }
          },
        });
        unsubscribe = () => {
          clearTimeout(timer);
          sub.unsubscribe();
        };
        if (settled) return unsubscribe();
        bus.nc.publish(rpcSubject(pattern), encoder.encode(JSON.stringify({ id, data: packet.data })), { reply: inbox });
      })
      .catch((err: Error) => finish({ err: err.message, isDisposed: true }));
    return () => {
      settled = true;
      unsubscribe();
    };
  }

  /** `emit(type, input)`: input is the event without its type ({ repo | user, payload, actor? }). */
  protected async dispatchEvent<T = unknown>(packet: ReadPacket<Omit<EventInput, 'type'>>): Promise<T> {
    const bus = await this.connect();
    const published = await bus.publish({ ...packet.data, type: this.normalizePattern(packet.pattern) });
    return published as T;
  }
}

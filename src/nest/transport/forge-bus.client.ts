import type { Msg } from '@nats-io/transport-node';
import { ClientProxy, type IncomingResponse, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { ForgeBus, inboxFor, type EventInput, type ForgeBusOptions } from '../../bus/index.js';
import { JsonRequestSerializer, JsonResponseDeserializer, messageOf, toWireMessage, type ForgeBusClientCodecOptions } from './codec.js';
import { ForgeBusRpcError, type ForgeBusRpcErrorCode } from './errors.js';
import { rpcSubject } from './rpc.js';

export type ForgeBusClientOptions = ({ bus: ForgeBus } | ForgeBusOptions) &
  ForgeBusClientCodecOptions & {
    /** How long `send()` waits for the first reply (default 10 s). */
    requestTimeoutMs?: number;
  };

/**
 * ClientProxy over forgebus. `emit(type, { repo, payload, actor })` publishes a forge event
 * (validated, persisted in FORGE_EVENTS); `send(pattern, data)` is a request answered by one
 * node's `@MessagePattern(pattern)` handler. Local failures of `send()` are ForgeBusRpcErrors;
 * errors raised by the remote handler arrive as Nest transmits them.
 *
 * `serializer`/`deserializer` set the wire format of requests and replies (default JSON) and
 * must match the servers'; `emit()` publishes in the bus's event format whatever they are.
 */
export class ForgeBusClient extends ClientProxy {
  private bus?: ForgeBus;
  private ownsBus = false;
  private connecting?: Promise<ForgeBus>;

  constructor(private readonly options: ForgeBusClientOptions) {
    super();
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
  }

  connect(): Promise<ForgeBus> {
    this.connecting ??= (async () => {
      if ('bus' in this.options) {
        this.bus = this.options.bus;
      } else {
        const { serializer: _serializer, deserializer: _deserializer, requestTimeoutMs: _timeout, ...busOptions } = this.options;
        this.bus = await ForgeBus.connect({ ...busOptions, feed: undefined });
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
    if (!this.bus) throw new ForgeBusRpcError('RPC_TRANSPORT', 'ForgeBusClient is not connected: call connect() first');
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
    const fail = (code: ForgeBusRpcErrorCode, message: string, cause?: unknown) =>
      finish({ err: new ForgeBusRpcError(code, message, { cause }), isDisposed: true });
    void this.connect()
      .then(async (bus) => {
        const request = this.assignPacketId(packet);
        const pattern = this.normalizePattern(packet.pattern);
        let wire: ReturnType<typeof toWireMessage>;
        try {
          wire = toWireMessage(await this.serializer.serialize(request), 'ForgeBusClient');
        } catch (err) {
          return fail('RPC_CODEC', `cannot serialize the request to "${pattern}": ${messageOf(err)}`, err);
        }
        if (settled) return;
        const inbox = inboxFor(bus.nc);
        const timeoutMs = this.options.requestTimeoutMs ?? 10_000;
        const timer = setTimeout(() => fail('RPC_TIMEOUT', `no reply to "${pattern}" within ${timeoutMs} ms: is a node handling it running and reachable?`), timeoutMs);
        // Replies of a streamed (Observable) answer are decoded one after the other, in arrival order.
        let decoded = Promise.resolve();
        const sub = bus.nc.subscribe(inbox, {
          callback: (err, msg) => {
            clearTimeout(timer);
            if (err) return fail('RPC_TRANSPORT', `request to "${pattern}" failed: ${err.message}`, err);
            if (msg.headers?.code === 503) {
              return fail('RPC_NO_RESPONDERS', `no forgebus node handles "${pattern}" (no responders): start a ForgeBusServer with @MessagePattern('${pattern}')`);
            }
            decoded = decoded.then(() => this.deliverReply(pattern, msg, finish, fail));
          },
        });
        unsubscribe = () => {
          clearTimeout(timer);
          sub.unsubscribe();
        };
        bus.nc.publish(rpcSubject(pattern), wire.data, { reply: inbox, headers: wire.headers });
      })
      .catch((err: unknown) => fail('RPC_TRANSPORT', `request to "${String(packet.pattern)}" failed: ${messageOf(err)}`, err));
    return () => {
      settled = true;
      unsubscribe();
    };
  }

  private async deliverReply(
    pattern: string,
    msg: Msg,
    finish: (reply: WritePacket) => void,
    fail: (code: ForgeBusRpcErrorCode, message: string, cause?: unknown) => void,
  ): Promise<void> {
    let reply: IncomingResponse;
    try {
      reply = await this.deserializer.deserialize(msg);
      if (typeof reply !== 'object' || reply === null) throw new ForgeBusRpcError('RPC_CODEC', `the deserializer returned ${String(reply)}`);
    } catch (err) {
      return fail('RPC_CODEC', `unreadable reply to "${pattern}" (${messageOf(err)}): do client and server use the same serializer/deserializer?`, err);
    }
    const { err, response, isDisposed } = reply;
    finish(isDisposed || err !== undefined ? { err, response, isDisposed: true } : { response });
  }

  /** `emit(type, input)`: input is the event without its type ({ repo | user, payload, actor? }). */
  protected async dispatchEvent<T = unknown>(packet: ReadPacket<Omit<EventInput, 'type'>>): Promise<T> {
    const bus = await this.connect();
    const published = await bus.publish({ ...packet.data, type: this.normalizePattern(packet.pattern) });
    return published as T;
  }

  protected override initializeSerializer(options: ForgeBusClientCodecOptions): void {
    this.serializer = options.serializer ?? new JsonRequestSerializer();
  }

  protected override initializeDeserializer(options: ForgeBusClientCodecOptions): void {
    this.deserializer = options.deserializer ?? new JsonResponseDeserializer();
  }
}

import { randomUUID } from 'node:crypto';
import type { Msg, Subscription } from '@nats-io/transport-node';
import { Server, type CustomTransportStrategy, type IncomingRequest, type OutgoingResponse } from '@nestjs/microservices';
import { ForgeBus, ForgeBusError, type DeliveredEvent, type FeedSubscription, type ForgeBusOptions } from '../../bus/index.js';
import { JsonRequestDeserializer, JsonResponseSerializer, messageOf, toWireMessage, type ForgeBusServerCodecOptions } from './codec.js';
import { ForgeBusRpcError } from './errors.js';
import { ForgeBusContext } from './forge-bus.context.js';
import { RPC_QUEUE, rpcSubject } from './rpc.js';

export type ForgeBusServerOptions = (
  /** Share the connection of a ForgeBus the application already has (e.g. `app.get(ForgeBus)`). */
  | { bus: ForgeBus }
  /** Or let the transport connect on its own. */
  | ForgeBusOptions
) &
  ForgeBusServerCodecOptions;

/**
 * A @nestjs/microservices transport over forgebus. `@EventPattern('issue.deleted')` handlers
 * receive events from the process's ordered feed (payload: the envelope; `@Ctx()` gives the
 * sequence); `@MessagePattern('x')` handlers answer requests sent with ForgeBusClient.send, one
 * node of the cluster per request (queue group).
 *
 * `serializer`/`deserializer` set the wire format of requests and replies, as for Nest's NATS
 * transport (default JSON); events keep the bus's envelope format (see ForgeBusServerCodecOptions).
 *
 *   app.connectMicroservice({ strategy: new ForgeBusServer({ bus: app.get(ForgeBus) }) });
 */
export class ForgeBusServer extends Server implements CustomTransportStrategy {
  private bus?: ForgeBus;
  private ownsBus = false;
  private readonly feedSubscriptions: FeedSubscription[] = [];
  private readonly rpcSubscriptions: Subscription[] = [];

  constructor(private readonly options: ForgeBusServerOptions) {
    super();
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
  }

  async listen(callback: (err?: unknown) => void): Promise<void> {
    try {
      if ('bus' in this.options) {
        this.bus = this.options.bus;
      } else {
        const { serializer: _serializer, deserializer: _deserializer, ...busOptions } = this.options;
        this.bus = await ForgeBus.connect(busOptions);
        this.ownsBus = true;
      }
      this.bindHandlers(this.bus);
      await this.bus.start();
      callback();
    } catch (err) {
      callback(err);
    }
  }

  private bindHandlers(bus: ForgeBus): void {
    for (const [pattern, handler] of this.messageHandlers) {
      if (handler.isEventHandler) {
        this.feedSubscriptions.push(
          bus.on(pattern, (event: DeliveredEvent) =>
            this.handleEvent(pattern, { pattern, data: event.envelope }, new ForgeBusContext([event.subject, event])),
          ),
        );
      } else {
        this.rpcSubscriptions.push(
          bus.nc.subscribe(rpcSubject(pattern), {
            queue: RPC_QUEUE,
            callback: (err, msg) => {
              if (!err) void this.handleRequestMessage(pattern, msg);
            },
          }),
        );
      }
    }
  }

  private async handleRequestMessage(pattern: string, msg: Msg): Promise<void> {
    let request: IncomingRequest;
    try {
      // A packet without id is still answered: the reply goes to the message's own inbox.
      request = (await this.deserializer.deserialize(msg, { channel: pattern, replyTo: msg.reply })) as IncomingRequest;
      if (typeof request !== 'object' || request === null) throw new ForgeBusRpcError('RPC_CODEC', `the deserializer returned ${String(request)}`);
    } catch (err) {
      await this.reply(msg, pattern, { id: randomUUID(), err: `malformed forgebus RPC request on ${msg.subject}: ${messageOf(err)}`, isDisposed: true });
      return;
    }
    const handler = this.getHandlerByPattern(pattern);
    if (!handler) {
      await this.reply(msg, pattern, { id: request.id, err: `no handler for pattern "${pattern}"`, isDisposed: true });
      return;
    }
    const context = new ForgeBusContext([msg.subject, undefined]);
    this.handleRequest(
      context,
      async () => this.transformToObservable(await handler(request.data, context)),
      (packet) => this.reply(msg, pattern, { ...packet, id: request.id }),
    );
  }

  private async reply(msg: Msg, pattern: string, packet: OutgoingResponse): Promise<void> {
    if (!msg.reply) return;
    let wire: ReturnType<typeof toWireMessage>;
    try {
      wire = toWireMessage(await this.serializer.serialize(packet), 'ForgeBusServer');
    } catch (err) {
      this.logger.error(`cannot serialize the reply to "${pattern}": ${messageOf(err)}`);
      // Plain JSON: the caller may not read it, but fails at once instead of waiting for its timeout.
      wire = { data: JSON.stringify({ id: packet.id, err: `the reply to "${pattern}" could not be serialized`, isDisposed: true }) };
    }
    msg.respond(wire.data, { headers: wire.headers });
  }

  protected override initializeSerializer(options: ForgeBusServerCodecOptions): void {
    this.serializer = options.serializer ?? new JsonResponseSerializer();
  }

  protected override initializeDeserializer(options: ForgeBusServerCodecOptions): void {
    this.deserializer = options.deserializer ?? new JsonRequestDeserializer();
  }

  async close(): Promise<void> {
    for (const s of this.feedSubscriptions.splice(0)) s.unsubscribe();
    for (const s of this.rpcSubscriptions.splice(0)) s.unsubscribe();
    if (this.ownsBus) await this.bus?.close();
  }

  on(): never {
    throw new ForgeBusError('NOT_SUPPORTED', 'ForgeBusServer has no status events: use ForgeBusOptions.connection.onStatus');
  }

  unwrap<T>(): T {
    if (!this.bus) throw new ForgeBusError('NOT_LISTENING', 'ForgeBusServer is not listening yet: unwrap() after app.startAllMicroservices()');
    return this.bus as T;
  }
}

import { randomUUID } from 'node:crypto';
import type { Msg, Subscription } from '@nats-io/transport-node';
import { Server, type CustomTransportStrategy, type WritePacket } from '@nestjs/microservices';
import { ForgeBus, type DeliveredEvent, type FeedSubscription, type ForgeBusOptions } from '../../bus/index.js';
import { ForgeBusContext } from './forge-bus.context.js';
import { RPC_QUEUE, rpcSubject, type RpcRequest } from './rpc.js';

export type ForgeBusServerOptions =
  /** Share the connection of a ForgeBus the application already has (e.g. `app.get(ForgeBus)`). */
  | { bus: ForgeBus }
  /** Or let the transport connect on its own. */
  | ForgeBusOptions;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A @nestjs/microservices transport over forgebus. `@EventPattern('issue.deleted')` handlers
 * receive events from the process's ordered feed (payload: the envelope; `@Ctx()` gives the
 * sequence); `@MessagePattern('x')` handlers answer requests sent with ForgeBusClient.send, one
 * node of the cluster per request (queue group).
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
  }

  async listen(callback: (err?: unknown) => void): Promise<void> {
    try {
      if ('bus' in this.options) {
        this.bus = this.options.bus;
      } else {
        this.bus = await ForgeBus.connect(this.options);
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
    let request: RpcRequest;
    const respond = (packet: WritePacket & { id: string }) => {
      if (msg.reply) msg.respond(encoder.encode(JSON.stringify(packet)));
    };
    try {
      request = JSON.parse(decoder.decode(msg.data)) as RpcRequest;
      if (typeof request !== 'object' || request === null) throw new Error('not an object');
    } catch {
      respond({ id: randomUUID(), err: `malformed forgebus RPC request on ${msg.subject}`, isDisposed: true });
      return;
    }
    const handler = this.getHandlerByPattern(pattern);
    if (!handler) {
      respond({ id: request.id, err: `no handler for pattern "${pattern}"`, isDisposed: true });
      return;
    }
    const context = new ForgeBusContext([msg.subject, undefined]);
    this.handleRequest(
      context,
      async () => this.transformToObservable(await handler(request.data, context)),
      (packet) => respond({ ...packet, id: request.id }),
    );
  }

  async close(): Promise<void> {
    for (const s of this.feedSubscriptions.splice(0)) s.unsubscribe();
    for (const s of this.rpcSubscriptions.splice(0)) s.unsubscribe();
    if (this.ownsBus) await this.bus?.close();
  }

  on(): never {
    throw new Error('ForgeBusServer has no status events: use ForgeBusOptions.connection.onStatus');
  }

  unwrap<T>(): T {
    if (!this.bus) throw new Error('ForgeBusServer is not listening yet');
    return this.bus as T;
  }
}

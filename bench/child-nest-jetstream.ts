/**
 * Case f, subscriber side: a NestJS microservice on `@nestjs-plugins/nestjs-nats-jetstream-transport`
 * (its `NatsJetStreamServer` custom strategy: nats.js v2, a durable push consumer on the event's
 * subject) with one @EventPattern handler that acks the message and counts, as the package's
 * README does. Started by bench/cases.ts via fork(); argv: url, subject, optionally max_ack_pending.
 *
 * The bench provisions the stream (FORGE_EVENTS's configuration under another name, see F_STREAM
 * in cases.ts) before starting this process, so the plugin gets no `streamConfig`; its consumer
 * delivers only events published after it started (deliver policy New) and stays on the stream for
 * all runs of the case, like the SDK's feed in d.
 */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, Payload, type MicroserviceOptions } from '@nestjs/microservices';
import { NatsJetStreamServer, type NatsJetStreamContext } from '@nestjs-plugins/nestjs-nats-jetstream-transport';
import { ChildCounter, childArgs, childMain, sendToParent } from './common.js';

const { url } = childArgs();
const subject = process.argv[3]!;
const maxAckPending = process.argv[4] ? Number(process.argv[4]) : undefined;
const counter = new ChildCounter(sendToParent);

@Controller()
class BenchEventsController {
  // The plugin subscribes each @EventPattern as a JetStream subject (its consumer's filter).
  @EventPattern(subject)
  // (Nest 12 types a handler's extra parameters as unknown: the context is cast.)
  onIssueCreated(@Payload() _event: unknown, @Ctx() context: unknown): void {
    (context as NatsJetStreamContext).message.ack();
    counter.hit();
  }
}

@Module({ controllers: [BenchEventsController] })
class BenchEventsModule {}

// The plugin's server does not implement Nest's unwrap(): keep the connection from its hook.
let connection: { flush(): Promise<void> } | undefined;
const app = await NestFactory.createMicroservice<MicroserviceOptions>(BenchEventsModule, {
  strategy: new NatsJetStreamServer({
    connectionOptions: {
      servers: url,
      name: 'bench-nest-js-sub',
      connectedHook: (nc) => {
        connection = nc;
      },
    },
    consumerOptions: {
      durable: 'bench-nest-js',
      deliverTo: 'bench-nest-js',
      deliverPolicy: 'New',
      manualAck: true,
      ...(maxAckPending ? { maxAckPending } : {}),
    },
  }),
  logger: ['error', 'warn'],
});
await app.listen();
// listen() resolved once the durable consumer was created and subscribed; make sure the server
// processed the subscription before the bench publishes.
await connection?.flush();
childMain(counter, () => app.close());
sendToParent({ type: 'ready', pid: process.pid });

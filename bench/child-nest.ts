/**
 * Case e, subscriber side: a NestJS microservice on Nest's built-in NATS transport (core NATS,
 * nothing persisted) with one @EventPattern('issue.created') handler that counts. Started by
 * bench/main via fork().
 */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, Payload, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import type { NatsConnection } from '@nats-io/transport-node';
import { ChildCounter, childArgs, childMain, sendToParent } from './common.js';

const { url } = childArgs();
const counter = new ChildCounter(sendToParent);

@Controller()
class BenchEventsController {
  @EventPattern('issue.created')
  onIssueCreated(@Payload() _event: unknown): void {
    counter.hit();
  }
}

@Module({ controllers: [BenchEventsController] })
class BenchEventsModule {}

const app = await NestFactory.createMicroservice<MicroserviceOptions>(BenchEventsModule, {
  transport: Transport.NATS,
  options: { servers: [url], name: 'bench-nest-sub' },
  logger: ['error', 'warn'],
});
await app.listen();
// The SUB is on the wire once listen() resolved; a flush makes sure the server processed it.
await app.unwrap<NatsConnection>().flush();
childMain(counter, () => app.close());
sendToParent({ type: 'ready', pid: process.pid });

import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ForgeBusServer } from '../nest/index.js';
import { loadForgeNodeConfig } from './config.js';
import { ForgeWorkerModule } from './worker.module.js';

/**
 * `npm run start:worker`: a NestJS microservice that only applies repository writes, so that
 * operators can scale writers apart from web nodes. Same environment as a node (no PORT).
 */
async function bootstrap(): Promise<void> {
  process.env.FORGE_ROLES = 'writer';
  const config = loadForgeNodeConfig(process.env);
  const app = await NestFactory.createMicroservice(ForgeWorkerModule, {
    // The transport answers node-addressed requests; its connection is named like the node's.
    strategy: new ForgeBusServer({ nodeId: config.nodeId, connection: { ...config.nats, name: `forge-worker-rpc:${config.nodeId}` }, replicas: config.replicas }),
    logger: ['log', 'warn', 'error'],
  });
  app.enableShutdownHooks();
  await app.listen();
  console.log(`forge-worker ${config.nodeId} applying repository writes`);
}

bootstrap().catch((err: Error) => {
  new Logger('forge-worker').error(err.message);
  process.exit(1);
});

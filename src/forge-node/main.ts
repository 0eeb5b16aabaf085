import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ForgeNodeModule } from './app.module.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from './config.js';
import { startupFailure } from './startup-failure.js';

/**
 * One forge node: `npm run start:node` with PORT, NODE_ID, NATS_URL, FORGE_DATA_DIR and
 * FORGE_SECRET in the environment.
 */
async function bootstrap(): Promise<void> {
  // forceCloseConnections: idle keep-alive connections must not hold a stopping node open.
  // bodyParser: false: JsonBodyMiddleware (registered by ForgeNodeModule) is the only parser, so
  // every body meets its type, size and depth limits before validation.
  // abortOnError: false: a failed start reaches the catch below (a clean message, exit code 1)
  // instead of process.abort().
  const app = await NestFactory.create(ForgeNodeModule, {
    logger: ['log', 'warn', 'error'],
    forceCloseConnections: true,
    bodyParser: false,
    abortOnError: false,
  });
  app.enableShutdownHooks();
  const config = app.get<ForgeNodeConfig>(FORGE_NODE_CONFIG);
  await app.listen(config.port, config.host);
  const address = app.getHttpServer().address() as { port: number };
  // A machine-readable line: the cluster launcher and the tests wait for it.
  console.log(`forge-node ${config.nodeId} listening on http://${config.host}:${address.port}`);
}

bootstrap().catch((err: Error) => {
  new Logger('forge-node').error(startupFailure(err));
  process.exit(1);
});

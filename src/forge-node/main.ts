import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SseHub } from '../sse/index.js';
import { ForgeNodeModule } from './app.module.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from './config.js';
import { EventStreamService } from './events/event-stream.service.js';
import { eventStreamRoute } from './http/event-stream.route.js';
import { placeInFront } from './http/front-listener.js';
import { gitHttpRoute } from './git-http/git-http.route.js';
import { RepoWriteQueue } from '../repo-writes/index.js';
import { ReposService } from './repos/repos.service.js';
import { startupFailure } from './startup-failure.js';

/**
 * Connections waiting to be accepted. When a node dies, its clients all reconnect to the others
 * within a few milliseconds; Node's default (511) overflows, and every dropped SYN costs its
 * client a retransmit 1, 3, 7 … s later. The kernel caps it at net.core.somaxconn (4096 here).
 */
const LISTEN_BACKLOG = 8192;

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
  // Event streams skip Nest and Express (see eventStreamRoute), with the container's hub and
  // repository service, so both entries to the route share every decision and every client.
  const streams = new EventStreamService(app.get(SseHub), app.get(ReposService));
  placeInFront(
    app.getHttpServer(),
    eventStreamRoute({ secret: config.secret, streams, logger: new Logger('EventStream') }),
    gitHttpRoute({ config, repos: app.get(ReposService), queue: app.get(RepoWriteQueue), logger: new Logger('GitHttp') }),
  );
  // listen(port, host, backlog) reaches server.listen as is; Nest's types only omit the backlog.
  const listen = app.listen.bind(app) as unknown as (port: number, host: string, backlog: number) => Promise<unknown>;
  await listen(config.port, config.host, LISTEN_BACKLOG);
  const address = app.getHttpServer().address() as { port: number };
  // A machine-readable line: the cluster launcher and the tests wait for it.
  console.log(`forge-node ${config.nodeId} listening on http://${config.host}:${address.port}`);
}

bootstrap().catch((err: Error) => {
  new Logger('forge-node').error(startupFailure(err));
  process.exit(1);
});

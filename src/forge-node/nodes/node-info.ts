import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Injectable, Optional, type OnApplicationBootstrap } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ForgeBus } from '../../index.js';
import { ForgeCache } from '../../cache/index.js';
import { Membership, TaskRegistry } from '../../cluster/index.js';
import { ModuleRef } from '@nestjs/core';
import { RepoWriteQueue } from '../../repo-writes/index.js';
import { SseHub } from '../../sse/index.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * What this node tells the cluster about itself (its membership record): where it serves HTTP,
 * known once the server listens, and its live figures. A worker-only process has no HTTP server,
 * SSE hub or cache: those parts are simply absent.
 */
@Injectable()
export class NodeInfo implements OnApplicationBootstrap {
  readonly version = VERSION;
  private listeningAt?: string;

  constructor(
    @Optional() private readonly adapterHost?: HttpAdapterHost,
    @Optional() private readonly hub?: SseHub,
    @Optional() private readonly cache?: ForgeCache,
    @Optional() private readonly queue?: RepoWriteQueue,
    // TaskRegistry comes from ClusterModule, which is built from this class: looked up lazily.
    @Optional() private readonly moduleRef?: ModuleRef,
    @Optional() private readonly bus?: ForgeBus,
  ) {}

  onApplicationBootstrap(): void {
    const server = this.adapterHost?.httpAdapter?.getHttpServer() as import('node:http').Server | undefined;
    server?.once('listening', () => {
      const address = server.address() as AddressInfo | null;
      if (address) this.listeningAt = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
      // The record published at start-up had no address yet: the cluster learns it now, not a refresh later.
      void this.membership()?.announce();
    });
  }

  get address(): string | undefined {
    return this.listeningAt;
  }

  counters(): Record<string, number> {
    const counters: Record<string, number> = {};
    if (this.hub) counters.sseStreams = this.hub.stats.clients;
    if (this.cache) {
      const { hits, misses } = this.cache.stats;
      counters.cacheHitRate = hits + misses === 0 ? 0 : Math.round((hits / (hits + misses)) * 1000) / 1000;
    }
    if (this.queue) counters.writesApplied = this.queue.stats.applied;
    if (this.bus) {
      // For `forgebus status` and GET /api/ops: the last FORGE_EVENTS sequence this process's
      // feed processed, and how far behind the stream it found itself at its last check.
      counters.feedPosition = this.bus.feed.stats.lastSeq;
      counters.feedBehind = this.bus.feed.stats.behind;
    }
    const tasks = this.tasks();
    if (tasks) counters.runningTasks = tasks.runningHere;
    return counters;
  }

  private membership(): Membership | undefined {
    try {
      return this.moduleRef?.get(Membership, { strict: false });
    } catch {
      return undefined;
    }
  }

  private tasks(): TaskRegistry | undefined {
    try {
      return this.moduleRef?.get(TaskRegistry, { strict: false });
    } catch {
      return undefined;
    }
  }
}

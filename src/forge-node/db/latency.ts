import { Inject, Injectable } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';

/**
 * Answers a database read after FORGE_DB_LATENCY_MS, the way a remote database would: the value
 * is read now and arrives later. With 0 (the default) it answers at once.
 */
@Injectable()
export class DbLatency {
  constructor(@Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig) {}

  async answer<T>(value: T): Promise<T> {
    if (this.config.dbLatencyMs > 0) await sleep(this.config.dbLatencyMs);
    return value;
  }
}

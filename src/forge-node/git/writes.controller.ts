import { Controller, Get } from '@nestjs/common';
import { RepoWriteQueue } from '../../repo-writes/index.js';

/** Operators' view of the repository write queue. */
@Controller('api/writes')
export class WritesController {
  constructor(private readonly queue: RepoWriteQueue) {}

  /** This process's counters (applied, failed, redelivered, in flight, wait and apply times) and the cluster's queue depth. */
  @Get('stats')
  async stats() {
    const queued = await this.queue.queued();
    return { ...this.queue.stats, queued: Object.values(queued).reduce((a, b) => a + b, 0), queuedByPartition: queued };
  }

  /** Writes that failed for good (a handler that kept failing, no handler), oldest first. */
  @Get('failures')
  failures() {
    return this.queue.listFailures();
  }
}

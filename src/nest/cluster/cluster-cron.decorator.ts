import { DiscoveryService } from '@nestjs/core';
import type { CronJobOptions } from '../../cluster/index.js';

export interface ClusterCronMetadata {
  schedule: string;
  name: string;
  options: CronJobOptions;
}

/** The discoverable mark behind @ClusterCron, read when the application bootstraps. */
export const ClusterCronMark = DiscoveryService.createDecorator<ClusterCronMetadata>();

/**
 * Runs the method on each tick of `schedule` (a cron expression; seconds optional as a first
 * field), once in the whole cluster: `@ClusterCron('0 *\/5 * * * *', 'repo-stats')`. The method
 * receives `{ tick, signal }`. Options: overlap and missed-tick policies (CronJobOptions).
 */
export const ClusterCron = (schedule: string, name: string, options: CronJobOptions = {}): MethodDecorator =>
  ClusterCronMark({ schedule, name, options });

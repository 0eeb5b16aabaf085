import { BadRequestException, Controller, Get, Query } from '@nestjs/common';
import { CronScheduler } from '../../cluster/index.js';

/** The cluster's cron jobs and their recorded runs. */
@Controller('api/cron')
export class CronController {
  constructor(private readonly cron: CronScheduler) {}

  /** `{ jobs: [{ name, schedule, lastRun, nextTick }] }`; lastRun is the cluster's latest, wherever it ran. */
  @Get()
  async jobs() {
    const jobs = await Promise.all(
      this.cron.list().map(async (job) => ({ name: job.name, schedule: job.schedule, lastRun: (await this.cron.runs(job.name, 1))[0] ?? null, nextTick: job.nextTick })),
    );
    return { jobs };
  }

  /** `{ runs: [{ tick, node, startedAt, finishedAt, outcome }] }`, newest first (the last 500). */
  @Get('runs')
  async runs(@Query('job') job?: unknown) {
    if (typeof job !== 'string' || !this.cron.list().some((j) => j.name === job)) {
      throw new BadRequestException(`job must name a cron job: ${this.cron.list().map((j) => j.name).join(', ')}`);
    }
    return { runs: await this.cron.runs(job, 500) };
  }
}

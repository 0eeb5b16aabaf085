import { Controller, Get } from '@nestjs/common';
import { ForgeCache } from '../../cache/index.js';

@Controller('api/cache')
export class CacheController {
  constructor(private readonly cache: ForgeCache) {}

  /** Hits, misses, invalidations, flushes, bypassed reads, age of the newest applied event … */
  @Get('stats')
  stats() {
    return this.cache.stats;
  }
}

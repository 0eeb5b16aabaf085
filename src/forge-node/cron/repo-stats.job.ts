import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { CronScheduler } from '../../cluster/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { DATABASE, type ForgeDatabase } from '../db/database.js';
import { repoPath } from '../git/bare-repos.js';

/** Bytes of every file below `dir` (an iterative walk: repositories can be deep). */
async function sizeOnDisk(dir: string): Promise<number> {
  let total = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop()!;
    for (const entry of await readdir(current, { withFileTypes: true }).catch(() => [])) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) pending.push(path);
      else if (entry.isFile()) total += (await stat(path).catch(() => ({ size: 0 }))).size;
    }
  }
  return total;
}

/**
 * The cluster's maintenance job `repo-stats` (FORGE_CRON_REPO_STATS, every 5 minutes by default):
 * recounts each repository's open issues and its size on disk. Registered on every node; each
 * tick runs on exactly one.
 */
@Injectable()
export class RepoStatsJob implements OnApplicationBootstrap {
  private readonly logger = new Logger('RepoStatsJob');

  constructor(
    private readonly cron: CronScheduler,
    @Inject(DATABASE) private readonly db: ForgeDatabase,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.cron.schedule('repo-stats', this.config.cronRepoStats, () => this.run());
  }

  async run(): Promise<number> {
    const repos = await this.db.all<{ owner: string; name: string }>('SELECT owner, name FROM repos');
    for (const { owner, name } of repos) {
      const open = (await this.db.get<{ n: number }>("SELECT CAST(COUNT(*) AS INTEGER) AS n FROM issues WHERE owner = ? AND name = ? AND state = 'open'", [owner, name]))!.n;
      const size = await sizeOnDisk(repoPath(this.config.dataDir, owner, name));
      try {
        await this.db.run(
          'INSERT INTO repo_stats (owner, name, open_issues, size_bytes, computed_at) VALUES (?, ?, ?, ?, ?) ' +
            'ON CONFLICT (owner, name) DO UPDATE SET open_issues = excluded.open_issues, size_bytes = excluded.size_bytes, computed_at = excluded.computed_at',
          [owner, name, open, size, new Date().toISOString()],
        );
      } catch {
        // Deleted while we counted (the foreign key refuses the row): nothing to record.
      }
    }
    this.logger.log(`repo-stats: ${repos.length} repositories counted`);
    return repos.length;
  }
}

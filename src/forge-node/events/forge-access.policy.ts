import { Injectable } from '@nestjs/common';
import type { DeliveredEvent, RepoRef } from '../../index.js';
import type { AccessChange, SseAccessPolicy } from '../../sse/index.js';
import { ReposService } from '../repos/repos.service.js';

/**
 * Who may see a repository's events on the stream: the same rule as the API (public, or owner
 * or collaborator). Decisions read the database, not the cache, so they never act on a record
 * the cache has not dropped yet.
 */
@Injectable()
export class ForgeAccessPolicy implements SseAccessPolicy {
  constructor(private readonly repos: ReposService) {}

  async canRead(user: string, repo: RepoRef): Promise<boolean> {
    return this.repos.canRead(await this.repos.loadRepo(repo.owner, repo.name), user);
  }

  async defaultRepos(user: string): Promise<RepoRef[]> {
    return this.repos.listWatchable(user);
  }

  accessChange(event: DeliveredEvent): AccessChange | undefined {
    const { type, repo, payload } = event.envelope;
    if (!repo) return undefined;
    switch (type) {
      case 'repo.collaborator_changed':
        return { repo, users: [(payload as { user: string }).user] };
      case 'repo.created':
        return { repo, users: [repo.owner] };
      // The repository is gone under this name: everyone watching it loses it.
      case 'repo.deleted':
      case 'repo.renamed':
      case 'repo.transferred':
        return { repo };
      default:
        return undefined;
    }
  }
}

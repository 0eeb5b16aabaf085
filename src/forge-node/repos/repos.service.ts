import { ConflictException, ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { CacheTags } from '../../cache/index.js';
import { Cached } from '../../nest/index.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { DATABASE, type ForgeDatabase } from '../db/database.js';
import { DbLatency } from '../db/latency.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';
import { initBareRepo, removeRepo, repoPath } from '../git/bare-repos.js';

export interface Repo {
  owner: string;
  name: string;
  private: boolean;
  createdAt: string;
  collaborators: string[];
}

interface RepoRow {
  owner: string;
  name: string;
  private: number;
  created_at: string;
}

/** Repository records (SQLite or PostgreSQL) and their bare git repositories; visibility rules live here. */
@Injectable()
export class ReposService {
  constructor(
    @Inject(DATABASE) private readonly db: ForgeDatabase,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly events: ForgeEventsService,
    private readonly latency: DbLatency,
  ) {}

  /** The repository record straight from the database (for decisions that must not see a stale cache). */
  async loadRepo(owner: string, name: string): Promise<Repo | undefined> {
    const row = await this.db.get<RepoRow>('SELECT owner, name, private, created_at FROM repos WHERE owner = ? AND name = ?', [owner, name]);
    return row ? this.toRepo(row) : undefined;
  }

  /** Whether `user` may read the repository (public, or owner/collaborator). */
  canRead(repo: Repo | undefined, user: string): repo is Repo {
    return repo !== undefined && (!repo.private || this.canWrite(repo, user));
  }

  /** Repositories `user` owns or collaborates on: what their event stream shows by default. */
  listWatchable(user: string): Promise<{ owner: string; name: string }[]> {
    return this.db.all<{ owner: string; name: string }>(
      'SELECT owner, name FROM repos WHERE owner = ? UNION SELECT owner, name FROM collaborators WHERE "user" = ? ORDER BY owner, name',
      [user, user],
    );
  }

  private async toRepo(row: RepoRow): Promise<Repo> {
    const collaborators = await this.db.all<{ user: string }>('SELECT "user" FROM collaborators WHERE owner = ? AND name = ? ORDER BY "user"', [row.owner, row.name]);
    return {
      owner: row.owner,
      name: row.name,
      private: row.private === 1,
      createdAt: row.created_at,
      collaborators: collaborators.map((r) => r.user),
    };
  }

  /** Whether `user` may write (owner or collaborator). */
  canWrite(repo: Repo, user: string): boolean {
    return repo.owner === user || repo.collaborators.includes(user);
  }

  /** The repository record (cached; also the basis of every permission check). */
  @Cached({
    key: (owner: string, name: string) => `repo:${owner}/${name}`,
    tags: (owner: string, name: string) => [CacheTags.repo({ owner, name }), CacheTags.repoMeta({ owner, name }), CacheTags.perm({ owner, name })],
  })
  async findRepo(owner: string, name: string): Promise<Repo | undefined> {
    return this.latency.answer(await this.loadRepo(owner, name));
  }

  /** The repository as `user` may see it; 404 when it does not exist or is private to others. */
  async getVisible(owner: string, name: string, user: string): Promise<Repo> {
    const repo = await this.findRepo(owner, name);
    if (!this.canRead(repo, user)) throw new NotFoundException(`repository ${owner}/${name} not found`);
    return repo;
  }

  /** Like getVisible, then 403 unless `user` is the owner. */
  async getOwned(owner: string, name: string, user: string): Promise<Repo> {
    const repo = await this.getVisible(owner, name, user);
    if (repo.owner !== user) throw new ForbiddenException(`only ${repo.owner} may administer ${owner}/${name}`);
    return repo;
  }

  async create(owner: string, name: string, isPrivate: boolean): Promise<Repo> {
    const createdAt = new Date().toISOString();
    try {
      await this.events.transaction(async (record, tx) => {
        await tx.run('INSERT INTO repos (owner, name, private, created_at) VALUES (?, ?, ?, ?)', [owner, name, isPrivate ? 1 : 0, createdAt]);
        record({ type: 'repo.created', repo: { owner, name }, actor: owner, payload: { isPrivate, defaultBranch: 'main' } });
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) {
        throw new ConflictException(`repository ${owner}/${name} already exists`);
      }
      throw err;
    }
    await initBareRepo(repoPath(this.config.dataDir, owner, name));
    return { owner, name, private: isPrivate, createdAt, collaborators: [] };
  }

  async delete(owner: string, name: string, user: string): Promise<void> {
    await this.getOwned(owner, name, user);
    await this.events.transaction(async (record, tx) => {
      await tx.run('DELETE FROM repos WHERE owner = ? AND name = ?', [owner, name]);
      record({ type: 'repo.deleted', repo: { owner, name }, actor: user, payload: {} });
    });
    await removeRepo(repoPath(this.config.dataDir, owner, name));
  }

  async setCollaborator(owner: string, name: string, collaborator: string, user: string, present: boolean): Promise<Repo> {
    await this.getOwned(owner, name, user);
    await this.events.transaction(async (record, tx) => {
      const change = present
        ? await tx.run('INSERT INTO collaborators (owner, name, "user") VALUES (?, ?, ?) ON CONFLICT DO NOTHING', [owner, name, collaborator])
        : await tx.run('DELETE FROM collaborators WHERE owner = ? AND name = ? AND "user" = ?', [owner, name, collaborator]);
      if (change.changes > 0) {
        record({
          type: 'repo.collaborator_changed',
          repo: { owner, name },
          actor: user,
          payload: { user: collaborator, change: present ? 'added' : 'removed' },
        });
      }
    });
    return this.getVisible(owner, name, user);
  }
}

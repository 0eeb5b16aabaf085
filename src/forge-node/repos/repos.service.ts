import { ConflictException, ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { DATABASE, type Db } from '../db/database.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';
import { initBareRepo, removeRepo, repoPath } from './git.js';

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

/** Repository records (SQLite) and their bare git repositories; visibility rules live here. */
@Injectable()
export class ReposService {
  constructor(
    @Inject(DATABASE) private readonly db: Db,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
    private readonly events: ForgeEventsService,
  ) {}

  private row(owner: string, name: string): RepoRow | undefined {
    return this.db.prepare('SELECT owner, name, private, created_at FROM repos WHERE owner = ? AND name = ?').get(owner, name) as
      | RepoRow
      | undefined;
  }

  private collaborators(owner: string, name: string): string[] {
    return (this.db.prepare('SELECT user FROM collaborators WHERE owner = ? AND name = ? ORDER BY user').all(owner, name) as { user: string }[]).map(
      (r) => r.user,
    );
  }

  private toRepo(row: RepoRow): Repo {
    return {
      owner: row.owner,
      name: row.name,
      private: row.private === 1,
      createdAt: row.created_at,
      collaborators: this.collaborators(row.owner, row.name),
    };
  }

  /** Whether `user` may write (owner or collaborator). */
  canWrite(repo: Repo, user: string): boolean {
    return repo.owner === user || repo.collaborators.includes(user);
  }

  /** The repository as `user` may see it; 404 when it does not exist or is private to others. */
  getVisible(owner: string, name: string, user: string): Repo {
    const row = this.row(owner, name);
    if (!row) throw new NotFoundException(`repository ${owner}/${name} not found`);
    const repo = this.toRepo(row);
    if (repo.private && !this.canWrite(repo, user)) throw new NotFoundException(`repository ${owner}/${name} not found`);
    return repo;
  }

  /** Like getVisible, then 403 unless `user` is the owner. */
  getOwned(owner: string, name: string, user: string): Repo {
    const repo = this.getVisible(owner, name, user);
    if (repo.owner !== user) throw new ForbiddenException(`only ${repo.owner} may administer ${owner}/${name}`);
    return repo;
  }

  async create(owner: string, name: string, isPrivate: boolean): Promise<Repo> {
    const createdAt = new Date().toISOString();
    try {
      this.events.transaction((record) => {
        this.db.prepare('INSERT INTO repos (owner, name, private, created_at) VALUES (?, ?, ?, ?)').run(owner, name, isPrivate ? 1 : 0, createdAt);
        record({ type: 'repo.created', repo: { owner, name }, actor: owner, payload: { isPrivate, defaultBranch: 'main' } });
      });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new ConflictException(`repository ${owner}/${name} already exists`);
      }
      throw err;
    }
    await initBareRepo(repoPath(this.config.dataDir, owner, name));
    return { owner, name, private: isPrivate, createdAt, collaborators: [] };
  }

  async delete(owner: string, name: string, user: string): Promise<void> {
    this.getOwned(owner, name, user);
    this.events.transaction((record) => {
      this.db.prepare('DELETE FROM repos WHERE owner = ? AND name = ?').run(owner, name);
      record({ type: 'repo.deleted', repo: { owner, name }, actor: user, payload: {} });
    });
    await removeRepo(repoPath(this.config.dataDir, owner, name));
  }

  setCollaborator(owner: string, name: string, collaborator: string, user: string, present: boolean): Repo {
    this.getOwned(owner, name, user);
    this.events.transaction((record) => {
      const change = present
        ? this.db.prepare('INSERT OR IGNORE INTO collaborators (owner, name, user) VALUES (?, ?, ?)').run(owner, name, collaborator)
        : this.db.prepare('DELETE FROM collaborators WHERE owner = ? AND name = ? AND user = ?').run(owner, name, collaborator);
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

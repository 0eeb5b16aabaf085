import { ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { CacheTags } from '../../cache/index.js';
import { Cached } from '../../nest/index.js';
import type { Statement } from 'better-sqlite3';
import { DATABASE, type Db } from '../db/database.js';
import { DbLatency } from '../db/latency.js';
import { ForgeEventsService } from '../outbox/forge-events.service.js';
import { ReposService } from '../repos/repos.service.js';

export type IssueState = 'open' | 'closed';

export interface Issue {
  number: number;
  title: string;
  body: string;
  state: IssueState;
  author: string;
  createdAt: string;
  updatedAt: string;
}

export interface IssueChanges {
  title?: string;
  body?: string;
  state?: IssueState;
}

interface IssueRow {
  number: number;
  title: string;
  body: string;
  state: IssueState;
  author: string;
  created_at: string;
  updated_at: string;
}

const toIssue = (r: IssueRow): Issue => ({
  number: r.number,
  title: r.title,
  body: r.body,
  state: r.state,
  author: r.author,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const COLUMNS = 'number, title, body, state, author, created_at, updated_at';

@Injectable()
export class IssuesService {
  // The read paths run on every request that misses the cache: compiled once.
  private readonly selectIssues: Statement;
  private readonly selectIssue: Statement;

  constructor(
    @Inject(DATABASE) private readonly db: Db,
    private readonly repos: ReposService,
    private readonly events: ForgeEventsService,
    private readonly latency: DbLatency,
  ) {
    this.selectIssues = this.db.prepare(`SELECT ${COLUMNS} FROM issues WHERE owner = ? AND name = ? ORDER BY number`);
    this.selectIssue = this.db.prepare(`SELECT ${COLUMNS} FROM issues WHERE owner = ? AND name = ? AND number = ?`);
  }


  @Cached({
    key: (owner: string, name: string) => `issues:${owner}/${name}`,
    tags: (owner: string, name: string) => [CacheTags.repo({ owner, name }), CacheTags.issues({ owner, name })],
  })
  async listIssues(owner: string, name: string): Promise<Issue[]> {
    const rows = this.selectIssues.all(owner, name) as IssueRow[];
    return this.latency.answer(rows.map(toIssue));
  }

  @Cached({
    key: (owner: string, name: string, number: number) => `issue:${owner}/${name}#${number}`,
    tags: (owner: string, name: string, number: number) => [CacheTags.repo({ owner, name }), CacheTags.issue({ owner, name }, number)],
  })
  async findIssue(owner: string, name: string, number: number): Promise<Issue | undefined> {
    const row = this.selectIssue.get(owner, name, number) as IssueRow | undefined;
    return this.latency.answer(row ? toIssue(row) : undefined);
  }

  async list(owner: string, name: string, user: string): Promise<Issue[]> {
    await this.repos.getVisible(owner, name, user);
    return this.listIssues(owner, name);
  }

  async get(owner: string, name: string, number: number, user: string): Promise<Issue> {
    await this.repos.getVisible(owner, name, user);
    const issue = await this.findIssue(owner, name, number);
    if (!issue) throw new NotFoundException(`issue #${number} not found in ${owner}/${name}`);
    return issue;
  }

  /** Uncached, for read-modify-write inside a transaction. */
  private find(owner: string, name: string, number: number): Issue {
    const row = this.selectIssue.get(owner, name, number) as IssueRow | undefined;
    if (!row) throw new NotFoundException(`issue #${number} not found in ${owner}/${name}`);
    return toIssue(row);
  }

  async create(owner: string, name: string, title: string, body: string, user: string): Promise<Issue> {
    await this.repos.getVisible(owner, name, user);
    const now = new Date().toISOString();
    const number = this.events.transaction((record) => {
      const repo = this.db.prepare('SELECT next_issue FROM repos WHERE owner = ? AND name = ?').get(owner, name) as { next_issue: number } | undefined;
      if (!repo) throw new NotFoundException(`repository ${owner}/${name} not found`);
      const n = repo.next_issue;
      this.db.prepare('UPDATE repos SET next_issue = next_issue + 1 WHERE owner = ? AND name = ?').run(owner, name);
      this.db
        .prepare(`INSERT INTO issues (owner, name, number, title, body, state, author, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)`)
        .run(owner, name, n, title, body, user, now, now);
      record({ type: 'issue.created', repo: { owner, name }, actor: user, payload: { number: n, title } });
      return n;
    });
    return { number, title, body, state: 'open', author: user, createdAt: now, updatedAt: now };
  }

  async update(owner: string, name: string, number: number, changes: IssueChanges, user: string): Promise<Issue> {
    const repo = await this.repos.getVisible(owner, name, user);
    return this.events.transaction((record) => {
      const current = this.find(owner, name, number);
      if (current.author !== user && !this.repos.canWrite(repo, user)) {
        throw new ForbiddenException(`only the author or a collaborator of ${owner}/${name} may edit issue #${number}`);
      }
      const changed = (['title', 'body', 'state'] as const).filter((f) => changes[f] !== undefined && changes[f] !== current[f]);
      if (changed.length === 0) return current;
      const next: Issue = { ...current, updatedAt: new Date().toISOString() };
      for (const field of changed) Object.assign(next, { [field]: changes[field] });
      this.db
        .prepare('UPDATE issues SET title = ?, body = ?, state = ?, updated_at = ? WHERE owner = ? AND name = ? AND number = ?')
        .run(next.title, next.body, next.state, next.updatedAt, owner, name, number);
      record({ type: 'issue.updated', repo: { owner, name }, actor: user, payload: { number, changed } });
      if (changed.includes('state')) {
        record({ type: 'issue.status_changed', repo: { owner, name }, actor: user, payload: { number, state: next.state } });
      }
      return next;
    });
  }

  async delete(owner: string, name: string, number: number, user: string): Promise<void> {
    const repo = await this.repos.getVisible(owner, name, user);
    if (!this.repos.canWrite(repo, user)) {
      throw new ForbiddenException(`only the owner or a collaborator of ${owner}/${name} may delete issues`);
    }
    this.events.transaction((record) => {
      const removed = this.db.prepare('DELETE FROM issues WHERE owner = ? AND name = ? AND number = ?').run(owner, name, number);
      if (removed.changes === 0) throw new NotFoundException(`issue #${number} not found in ${owner}/${name}`);
      record({ type: 'issue.deleted', repo: { owner, name }, actor: user, payload: { number } });
    });
  }
}

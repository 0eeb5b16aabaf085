import { ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { CacheTags } from '../../cache/index.js';
import { Cached } from '../../nest/index.js';
import { DATABASE, type ForgeDatabase, type SqlRunner } from '../db/database.js';
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
const SELECT_ISSUE = `SELECT ${COLUMNS} FROM issues WHERE owner = ? AND name = ? AND number = ?`;

@Injectable()
export class IssuesService {
  constructor(
    @Inject(DATABASE) private readonly db: ForgeDatabase,
    private readonly repos: ReposService,
    private readonly events: ForgeEventsService,
    private readonly latency: DbLatency,
  ) {}

  @Cached({
    key: (owner: string, name: string) => `issues:${owner}/${name}`,
    tags: (owner: string, name: string) => [CacheTags.repo({ owner, name }), CacheTags.issues({ owner, name })],
  })
  async listIssues(owner: string, name: string): Promise<Issue[]> {
    const rows = await this.db.all<IssueRow>(`SELECT ${COLUMNS} FROM issues WHERE owner = ? AND name = ? ORDER BY number`, [owner, name]);
    return this.latency.answer(rows.map(toIssue));
  }

  @Cached({
    key: (owner: string, name: string, number: number) => `issue:${owner}/${name}#${number}`,
    tags: (owner: string, name: string, number: number) => [CacheTags.repo({ owner, name }), CacheTags.issue({ owner, name }, number)],
  })
  async findIssue(owner: string, name: string, number: number): Promise<Issue | undefined> {
    const row = await this.db.get<IssueRow>(SELECT_ISSUE, [owner, name, number]);
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

  /** Uncached and locked, for read-modify-write inside a transaction. */
  private async findForUpdate(tx: SqlRunner, owner: string, name: string, number: number): Promise<Issue> {
    const row = await tx.get<IssueRow>(SELECT_ISSUE + this.db.forUpdate, [owner, name, number]);
    if (!row) throw new NotFoundException(`issue #${number} not found in ${owner}/${name}`);
    return toIssue(row);
  }

  async create(owner: string, name: string, title: string, body: string, user: string): Promise<Issue> {
    await this.repos.getVisible(owner, name, user);
    const now = new Date().toISOString();
    const number = await this.events.transaction(async (record, tx) => {
      // One statement takes the number and moves the counter: concurrent creates on PostgreSQL
      // queue on the row lock instead of reading the same number.
      const repo = await tx.get<{ n: number }>('UPDATE repos SET next_issue = next_issue + 1 WHERE owner = ? AND name = ? RETURNING next_issue - 1 AS n', [owner, name]);
      if (!repo) throw new NotFoundException(`repository ${owner}/${name} not found`);
      const n = repo.n;
      await tx.run(`INSERT INTO issues (owner, name, number, title, body, state, author, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?)`, [
        owner, name, n, title, body, user, now, now,
      ]);
      record({ type: 'issue.created', repo: { owner, name }, actor: user, payload: { number: n, title } });
      return n;
    });
    return { number, title, body, state: 'open', author: user, createdAt: now, updatedAt: now };
  }

  async update(owner: string, name: string, number: number, changes: IssueChanges, user: string): Promise<Issue> {
    const repo = await this.repos.getVisible(owner, name, user);
    return this.events.transaction(async (record, tx) => {
      const current = await this.findForUpdate(tx, owner, name, number);
      if (current.author !== user && !this.repos.canWrite(repo, user)) {
        throw new ForbiddenException(`only the author or a collaborator of ${owner}/${name} may edit issue #${number}`);
      }
      const changed = (['title', 'body', 'state'] as const).filter((f) => changes[f] !== undefined && changes[f] !== current[f]);
      if (changed.length === 0) return current;
      const next: Issue = { ...current, updatedAt: new Date().toISOString() };
      for (const field of changed) Object.assign(next, { [field]: changes[field] });
      await tx.run('UPDATE issues SET title = ?, body = ?, state = ?, updated_at = ? WHERE owner = ? AND name = ? AND number = ?', [
        next.title, next.body, next.state, next.updatedAt, owner, name, number,
      ]);
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
    await this.events.transaction(async (record, tx) => {
      const removed = await tx.run('DELETE FROM issues WHERE owner = ? AND name = ? AND number = ?', [owner, name, number]);
      if (removed.changes === 0) throw new NotFoundException(`issue #${number} not found in ${owner}/${name}`);
      record({ type: 'issue.deleted', repo: { owner, name }, actor: user, payload: { number } });
    });
  }
}

import type { EventEnvelope } from '../bus/index.js';
import { CacheTags as T } from './tags.js';

/** Tags an event invalidates. Return an empty list for "nothing". */
export type InvalidationRule = (event: EventEnvelope) => string[];

type P = Record<string, unknown>;
const num = (payload: unknown, field: string) => (payload as P)[field] as number;
const str = (payload: unknown, field: string) => (payload as P)[field] as string;

/**
 * Which tags each built-in event invalidates. This table is documented in docs/cache.md; keep
 * the two in step.
 */
export const DEFAULT_INVALIDATION_RULES: Readonly<Record<string, InvalidationRule>> = {
  'repo.created': (e) => [T.repo(e.repo!)],
  'repo.deleted': (e) => [T.repo(e.repo!)],
  'repo.renamed': (e) => [T.repo(e.repo!), T.repo({ owner: e.repo!.owner, name: str(e.payload, 'newName') })],
  'repo.transferred': (e) => [T.repo(e.repo!), T.repo({ owner: str(e.payload, 'newOwner'), name: e.repo!.name })],
  'repo.collaborator_changed': (e) => [T.repoMeta(e.repo!), T.perm(e.repo!)],
  'repo.pushed': (e) => [T.refs(e.repo!)],
  'ref.created': (e) => [T.refs(e.repo!)],
  'ref.deleted': (e) => [T.refs(e.repo!)],
  // The issue itself too: a "not found" read of that number may be cached.
  'issue.created': (e) => [T.issue(e.repo!, num(e.payload, 'number')), T.issues(e.repo!)],
  'issue.updated': (e) => [T.issue(e.repo!, num(e.payload, 'number')), T.issues(e.repo!)],
  'issue.status_changed': (e) => [T.issue(e.repo!, num(e.payload, 'number')), T.issues(e.repo!)],
  'issue.deleted': (e) => [T.issue(e.repo!, num(e.payload, 'number')), T.issues(e.repo!)],
  'comment.created': (e) => [T.issue(e.repo!, num(e.payload, 'issueNumber'))],
  'comment.updated': (e) => [T.issue(e.repo!, num(e.payload, 'issueNumber'))],
  'comment.deleted': (e) => [T.issue(e.repo!, num(e.payload, 'issueNumber'))],
  'pull_request.opened': (e) => [T.pulls(e.repo!)],
  'pull_request.merged': (e) => [T.pulls(e.repo!), T.refs(e.repo!)],
  'pull_request.closed': (e) => [T.pulls(e.repo!)],
  'user.notification_count': (e) => [T.user(e.user!)],
  'user.stopwatch_changed': (e) => [T.user(e.user!)],
  'user.logged_out': (e) => [T.user(e.user!)],
};

/** The rule table of one cache: the defaults plus the forge's own. */
export class InvalidationRules {
  private readonly rules = new Map<string, InvalidationRule[]>();

  constructor(rules: Readonly<Record<string, InvalidationRule>> = DEFAULT_INVALIDATION_RULES) {
    for (const [type, rule] of Object.entries(rules)) this.add(type, rule);
  }

  /** Adds a rule for `type`; several rules of one type all apply. */
  add(type: string, rule: InvalidationRule): this {
    const list = this.rules.get(type) ?? [];
    list.push(rule);
    this.rules.set(type, list);
    return this;
  }

  tagsFor(event: EventEnvelope): string[] {
    const list = this.rules.get(event.type);
    if (!list) return [];
    return list.length === 1 ? list[0]!(event) : list.flatMap((rule) => rule(event));
  }

  types(): string[] {
    return [...this.rules.keys()].sort();
  }
}

import { parseEventSubject, type EventEnvelope, type RepoRef } from '../bus/index.js';

/**
 * What a client listens to: one repository, one user, or the whole site. Keys are strings so
 * the index is a plain Map; the NUL separator cannot occur in owner or repository names.
 */
export type TopicKey = string;

export const SITE_TOPIC: TopicKey = 's';
export const repoTopic = (repo: RepoRef): TopicKey => `r:${repo.owner}\u0000${repo.name}`;
export const userTopic = (user: string): TopicKey => `u:${user}`;

/** The one topic an event belongs to: its repository, else its user, else the site. */
export function topicOf(envelope: EventEnvelope): TopicKey {
  if (envelope.repo) return repoTopic(envelope.repo);
  if (envelope.user !== undefined) return userTopic(envelope.user);
  return SITE_TOPIC;
}

/**
 * The topic of a stored message, from its subject alone: a replay skips what the client does
 * not watch before paying for JSON and validation. Throws on a subject that is not an event's.
 */
export function topicOfSubject(subject: string): TopicKey {
  const { scope } = parseEventSubject(subject);
  return scope.kind === 'repo' ? repoTopic(scope.repo) : scope.kind === 'user' ? userTopic(scope.user) : SITE_TOPIC;
}

/** Topic → members; the fan-out index of one process. */
export class TopicIndex<T> {
  private readonly members = new Map<TopicKey, Set<T>>();

  add(topic: TopicKey, member: T): void {
    let set = this.members.get(topic);
    if (!set) this.members.set(topic, (set = new Set()));
    set.add(member);
  }

  remove(topic: TopicKey, member: T): void {
    const set = this.members.get(topic);
    if (!set) return;
    set.delete(member);
    if (set.size === 0) this.members.delete(topic);
  }

  get(topic: TopicKey): ReadonlySet<T> | undefined {
    return this.members.get(topic);
  }

  get topics(): number {
    return this.members.size;
  }
}

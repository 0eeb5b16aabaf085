import type { DeliveredEvent, RepoRef } from '../bus/index.js';

/** An event that may have changed who may read `repo` (for `users`, or for anyone when absent). */
export interface AccessChange {
  repo: RepoRef;
  users?: string[];
}

/**
 * The forge's permission model, as the SSE hub needs it. The hub asks at connect (through the
 * application, which answers 403) and again, in stream order, whenever `accessChange` says an
 * event may have changed the answer: a removed collaborator stops receiving a private
 * repository's events from the next event on.
 */
export interface SseAccessPolicy {
  /** Whether `user` may read `repo` now. */
  canRead(user: string, repo: RepoRef): Promise<boolean>;
  /** The repositories a client watches when it names none (a forge: owned and collaborating). */
  defaultRepos(user: string): Promise<RepoRef[]>;
  /** Which reads `event` may change; undefined for the (vast) majority that change none. */
  accessChange(event: DeliveredEvent): AccessChange | undefined;
}

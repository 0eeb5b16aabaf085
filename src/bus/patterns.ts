import type { DeliveredEvent } from './envelope.js';
import { InvalidTypePatternError } from './errors.js';
import type { RepoRef } from './subjects.js';

/**
 * Handler selection. A type pattern is `<entity>.<action>` where either token may be `*`,
 * or `*` / `>` alone for every type. A filter narrows to one repository and/or one user.
 */
export type TypePattern = string;

export interface EventFilter {
  repo?: RepoRef;
  user?: string;
}

export type EventMatcher = (event: DeliveredEvent) => boolean;

export function compileTypePattern(pattern: TypePattern): (type: string) => boolean {
  if (pattern === '*' || pattern === '>') return () => true;
  const [entity, action, extra] = pattern.split('.');
  if (!entity || !action || extra !== undefined) {
    throw new InvalidTypePatternError(pattern);
  }
  if (entity === '*' && action === '*') return () => true;
  if (entity === '*') {
    const suffix = `.${action}`;
    return (type) => type.endsWith(suffix);
  }
  if (action === '*') {
    const prefix = `${entity}.`;
    return (type) => type.startsWith(prefix);
  }
  return (type) => type === pattern;
}

export function compileMatcher(patterns: TypePattern | TypePattern[], filter?: EventFilter): EventMatcher {
  const typeTests = (Array.isArray(patterns) ? patterns : [patterns]).map(compileTypePattern);
  const typeMatches = typeTests.length === 1 ? typeTests[0]! : (type: string) => typeTests.some((t) => t(type));
  const repo = filter?.repo;
  const user = filter?.user;
  if (!repo && user === undefined) return (e) => typeMatches(e.envelope.type);
  return (e) => {
    const env = e.envelope;
    if (repo && (env.repo?.owner !== repo.owner || env.repo?.name !== repo.name)) return false;
    if (user !== undefined && env.user !== user) return false;
    return typeMatches(env.type);
  };
}

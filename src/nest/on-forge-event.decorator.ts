import { SetMetadata } from '@nestjs/common';
import type { EventFilter, TypePattern } from '../bus/index.js';
import { ON_FORGE_EVENT } from './tokens.js';

export interface OnForgeEventMetadata {
  patterns: TypePattern[];
  filter?: EventFilter;
}

/**
 * Marks a provider or controller method as a handler of forge events from this process's feed:
 * `@OnForgeEvent('issue.deleted')`, `@OnForgeEvent(['issue.*', 'repo.deleted'])`. The method
 * receives the DeliveredEvent ({seq, subject, envelope}); an async method is awaited before
 * the next event reaches it.
 */
export const OnForgeEvent = (patterns: TypePattern | TypePattern[], filter?: EventFilter): MethodDecorator =>
  SetMetadata<string, OnForgeEventMetadata>(ON_FORGE_EVENT, {
    patterns: Array.isArray(patterns) ? patterns : [patterns],
    filter,
  });

import { DiscoveryService } from '@nestjs/core';
import type { EventFilter, TypePattern } from '../bus/index.js';

export interface OnForgeEventMetadata {
  patterns: TypePattern[];
  filter?: EventFilter;
}

/** The discoverable mark behind @OnForgeEvent, read by ForgeEventsExplorer. */
export const ForgeEventHandlerMark = DiscoveryService.createDecorator<OnForgeEventMetadata>();

/**
 * Marks a provider or controller method as a handler of forge events from this process's feed:
 * `@OnForgeEvent('issue.deleted')`, `@OnForgeEvent(['issue.*', 'repo.deleted'])`. The method
 * receives the DeliveredEvent ({seq, subject, envelope}); an async method is awaited before
 * the next event reaches it.
 */
export const OnForgeEvent = (patterns: TypePattern | TypePattern[], filter?: EventFilter): MethodDecorator =>
  ForgeEventHandlerMark({ patterns: Array.isArray(patterns) ? patterns : [patterns], filter });

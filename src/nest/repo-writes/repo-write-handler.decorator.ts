import { DiscoveryService } from '@nestjs/core';

export interface RepoWriteHandlerMetadata {
  operation: string;
}

/** The discoverable mark behind @RepoWriteHandler, read when the application bootstraps. */
export const RepoWriteHandlerMark = DiscoveryService.createDecorator<RepoWriteHandlerMetadata>();

/**
 * Marks a provider method as the handler of a repository write operation:
 * `@RepoWriteHandler('commit') async commit(ctx: RepoWriteContext<CommitArgs>) { … }`.
 * Handlers must be idempotent: a write whose worker died is delivered again.
 */
export const RepoWriteHandler = (operation: string): MethodDecorator => RepoWriteHandlerMark({ operation });

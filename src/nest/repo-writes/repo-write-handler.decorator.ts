import { SetMetadata } from '@nestjs/common';

export const REPO_WRITE_HANDLER = 'forgebus:repo-write-handler';

/**
 * Marks a provider method as the handler of a repository write operation:
 * `@RepoWriteHandler('commit') async commit(ctx: RepoWriteContext<CommitArgs>) { … }`.
 * Handlers must be idempotent: a write whose worker died is delivered again.
 */
export const RepoWriteHandler = (operation: string): MethodDecorator => SetMetadata(REPO_WRITE_HANDLER, operation);

import { Type } from 'class-transformer';
import {
  ArrayNotEmpty,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Length,
  Matches,
  Min,
  ValidateNested,
} from 'class-validator';
import { defineEvent, type EventDefinition } from './catalog.js';

/**
 * The built-in forge events, schema version 1. Payloads carry what subscribers need to act
 * (invalidate, notify) without a database read; the repository or user the event concerns is
 * in the envelope, not repeated here.
 */

const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
const SHA_MESSAGE = { message: 'must be a 40 or 64 character lower-case hex object id' };
const REF = /^refs\/\S+$/;
const REF_MESSAGE = { message: 'must be a full ref name such as refs/heads/main' };

export class RepoCreatedEvent {
  @IsBoolean() isPrivate!: boolean;
  @IsOptional() @IsString() defaultBranch?: string;
}
export class RepoDeletedEvent {}
export class RepoRenamedEvent {
  @IsString() @Length(1, 100) oldName!: string;
  @IsString() @Length(1, 100) newName!: string;
}
export class RepoTransferredEvent {
  @IsString() @Length(1, 100) oldOwner!: string;
  @IsString() @Length(1, 100) newOwner!: string;
}
export class RepoPushedEvent {
  @Matches(REF, REF_MESSAGE) ref!: string;
  @Matches(SHA, SHA_MESSAGE) before!: string;
  @Matches(SHA, SHA_MESSAGE) after!: string;
  @IsInt() @Min(0) commitCount!: number;
}
export class RefCreatedEvent {
  @Matches(REF, REF_MESSAGE) ref!: string;
  @Matches(SHA, SHA_MESSAGE) sha!: string;
}
export class RefDeletedEvent {
  @Matches(REF, REF_MESSAGE) ref!: string;
  @Matches(SHA, SHA_MESSAGE) sha!: string;
}
export class CollaboratorChangedEvent {
  @IsString() @Length(1, 100) user!: string;
  @IsIn(['added', 'removed']) change!: 'added' | 'removed';
}
export class IssueCreatedEvent {
  @IsInt() @Min(1) number!: number;
  @IsString() title!: string;
}
export class IssueUpdatedEvent {
  @IsInt() @Min(1) number!: number;
  @IsArray() @ArrayNotEmpty() @IsString({ each: true }) changed!: string[];
}
export class IssueStatusChangedEvent {
  @IsInt() @Min(1) number!: number;
  @IsIn(['open', 'closed']) state!: 'open' | 'closed';
}
export class IssueDeletedEvent {
  @IsInt() @Min(1) number!: number;
}
export class CommentCreatedEvent {
  @IsInt() @Min(1) issueNumber!: number;
  @IsInt() @Min(1) commentId!: number;
}
export class CommentUpdatedEvent {
  @IsInt() @Min(1) issueNumber!: number;
  @IsInt() @Min(1) commentId!: number;
}
export class CommentDeletedEvent {
  @IsInt() @Min(1) issueNumber!: number;
  @IsInt() @Min(1) commentId!: number;
}
export class PullRequestOpenedEvent {
  @IsInt() @Min(1) number!: number;
  @IsString() title!: string;
  @IsString() head!: string;
  @IsString() base!: string;
}
export class PullRequestMergedEvent {
  @IsInt() @Min(1) number!: number;
  @Matches(SHA, SHA_MESSAGE) mergeSha!: string;
}
export class PullRequestClosedEvent {
  @IsInt() @Min(1) number!: number;
}
export class UserNotificationCountEvent {
  @IsInt() @Min(0) count!: number;
}
class StopwatchIssueRef {
  @IsString() owner!: string;
  @IsString() name!: string;
  @IsInt() @Min(1) number!: number;
}
export class UserStopwatchChangedEvent {
  @IsBoolean() running!: boolean;
  @IsOptional() @ValidateNested() @Type(() => StopwatchIssueRef) issue?: StopwatchIssueRef;
  @IsOptional() @IsInt() @Min(0) seconds?: number;
}
export class UserLoggedOutEvent {
  @IsOptional() @IsString() sessionId?: string;
}

/**
 * Type map used by the publisher's typed overloads. Forges extend it by declaration merging:
 * `declare module 'forgebus' { interface ForgeEventPayloads { 'wiki.edited': WikiEdited } }`.
 */
export interface ForgeEventPayloads {
  'repo.created': RepoCreatedEvent;
  'repo.deleted': RepoDeletedEvent;
  'repo.renamed': RepoRenamedEvent;
  'repo.transferred': RepoTransferredEvent;
  'repo.pushed': RepoPushedEvent;
  'repo.collaborator_changed': CollaboratorChangedEvent;
  'ref.created': RefCreatedEvent;
  'ref.deleted': RefDeletedEvent;
  'issue.created': IssueCreatedEvent;
  'issue.updated': IssueUpdatedEvent;
  'issue.status_changed': IssueStatusChangedEvent;
  'issue.deleted': IssueDeletedEvent;
  'comment.created': CommentCreatedEvent;
  'comment.updated': CommentUpdatedEvent;
  'comment.deleted': CommentDeletedEvent;
  'pull_request.opened': PullRequestOpenedEvent;
  'pull_request.merged': PullRequestMergedEvent;
  'pull_request.closed': PullRequestClosedEvent;
  'user.notification_count': UserNotificationCountEvent;
  'user.stopwatch_changed': UserStopwatchChangedEvent;
  'user.logged_out': UserLoggedOutEvent;
}

const repo = (type: string, payload: new () => object) => defineEvent({ type, version: 1, scope: 'repo', payload });
const user = (type: string, payload: new () => object) => defineEvent({ type, version: 1, scope: 'user', payload });

export const BUILTIN_EVENTS: readonly EventDefinition[] = [
  repo('repo.created', RepoCreatedEvent),
  repo('repo.deleted', RepoDeletedEvent),
  repo('repo.renamed', RepoRenamedEvent),
  repo('repo.transferred', RepoTransferredEvent),
  repo('repo.pushed', RepoPushedEvent),
  repo('repo.collaborator_changed', CollaboratorChangedEvent),
  repo('ref.created', RefCreatedEvent),
  repo('ref.deleted', RefDeletedEvent),
  repo('issue.created', IssueCreatedEvent),
  repo('issue.updated', IssueUpdatedEvent),
  repo('issue.status_changed', IssueStatusChangedEvent),
  repo('issue.deleted', IssueDeletedEvent),
  repo('comment.created', CommentCreatedEvent),
  repo('comment.updated', CommentUpdatedEvent),
  repo('comment.deleted', CommentDeletedEvent),
  repo('pull_request.opened', PullRequestOpenedEvent),
  repo('pull_request.merged', PullRequestMergedEvent),
  repo('pull_request.closed', PullRequestClosedEvent),
  user('user.notification_count', UserNotificationCountEvent),
  user('user.stopwatch_changed', UserStopwatchChangedEvent),
  user('user.logged_out', UserLoggedOutEvent),
];

import { STATUS_CODES } from 'node:http';
import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  GatewayTimeoutException,
  HttpCode,
  HttpException,
  Inject,
  InternalServerErrorException,
  NotFoundException,
  Param,
  Post,
  Query,
  PayloadTooLargeException,
  ServiceUnavailableException,
} from '@nestjs/common';
import { IsString, MaxLength } from 'class-validator';
import { RepoWriteQueue, WriteFailedError, WriteQueueUnavailableError, WriteTimeoutError, WriteTooLargeError } from '../../repo-writes/index.js';
import { CurrentUser } from '../auth/auth.guard.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { OptionalField } from '../http/optional-field.js';
import { NamePipe, quote, RefNamePipe, refNameProblem, revisionProblem } from '../params.js';
import { ReposService } from '../repos/repos.service.js';
import { repoPath } from './bare-repos.js';
import { commitMessageProblem, filePathProblem } from './commit-rules.js';
import { listCommits, resolveRef, type CommitSummary } from './git-writes.js';
import type { CommitArgs, RefArgs } from './repo-writes.service.js';

export class CommitDto {
  @IsString() branch!: string;
  @IsString() path!: string;
  @IsString() @MaxLength(512 * 1024) content!: string;
  @IsString() @MaxLength(10_000) message!: string;
}

export class CreateBranchDto {
  /** A commit sha or a branch name. */
  @IsString() from!: string;
}

export class CreateTagDto {
  @IsString() name!: string;
  @IsString() target!: string;
  @OptionalField() @IsString() message?: string;
}

/**
 * Maps queue outcomes to HTTP: a write that cannot succeed (PermanentWriteError: bad input, a
 * conflict, a missing ref) keeps its 4xx status; one that kept failing for another reason is a
 * 500 that points to where it is recorded. Reasons are the handlers' own clean messages.
 */
function httpError(err: unknown): never {
  if (err instanceof WriteFailedError) {
    if (err.status !== undefined && err.status >= 400 && err.status < 500) {
      throw new HttpException({ statusCode: err.status, message: err.reason, error: STATUS_CODES[err.status] }, err.status);
    }
    throw new InternalServerErrorException(
      `write ${err.writeId} could not be applied after ${err.deliveries} attempt(s): ${err.reason}; it is listed by GET /api/writes/failures`,
    );
  }
  if (err instanceof WriteTimeoutError) throw new GatewayTimeoutException(err.message);
  if (err instanceof WriteQueueUnavailableError) throw new ServiceUnavailableException(err.message);
  if (err instanceof WriteTooLargeError) throw new PayloadTooLargeException(`${err.message}: commit a smaller file`);
  if (err instanceof HttpException) throw err;
  throw err;
}

/**
 * Git reads and writes of the example forge. Writes go through the repository write queue, so
 * concurrent writes to one repository are applied one after the other, cluster-wide.
 */
@Controller('api/repos/:owner/:name')
export class GitController {
  constructor(
    private readonly repos: ReposService,
    private readonly queue: RepoWriteQueue,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  private async writable(owner: string, name: string, user: string) {
    const repo = await this.repos.getVisible(owner, name, user);
    if (!this.repos.canWrite(repo, user)) throw new NotFoundException(`repository ${owner}/${name} not found or not writable by ${user}`);
    return { owner, name };
  }

  @Post('commits')
  async commit(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Body() body: CommitDto,
    @CurrentUser() user: string,
  ): Promise<{ sha: string; parent: string | null }> {
    const branchProblem = refNameProblem(body.branch);
    if (branchProblem) throw new BadRequestException(`invalid branch name ${quote(body.branch)}: ${branchProblem}`);
    const pathProblem = filePathProblem(body.path);
    if (pathProblem) throw new BadRequestException(`invalid path ${quote(body.path)}: ${pathProblem}`);
    const messageProblem = commitMessageProblem(body.message);
    if (messageProblem) throw new BadRequestException(`invalid commit message: it ${messageProblem}`);
    const repo = await this.writable(owner, name, user);
    const args: CommitArgs = { branch: body.branch, path: body.path, content: body.content, message: body.message, author: user };
    return this.queue.submit<{ sha: string; parent: string | null }>(repo, 'commit', args).catch(httpError);
  }

  @Get('branches/:branch')
  async branch(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('branch', new RefNamePipe()) branch: string,
    @CurrentUser() user: string,
  ): Promise<{ sha: string }> {
    await this.repos.getVisible(owner, name, user);
    const sha = await resolveRef(repoPath(this.config.dataDir, owner, name), `refs/heads/${branch}`);
    if (!sha) throw new NotFoundException(`branch ${branch} not found in ${owner}/${name}`);
    return { sha };
  }

  @Get('commits')
  async commits(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Query('branch', new RefNamePipe()) branch: string,
    @CurrentUser() user: string,
  ): Promise<CommitSummary[]> {
    await this.repos.getVisible(owner, name, user);
    return listCommits(repoPath(this.config.dataDir, owner, name), branch);
  }

  @Post('branches/:branch')
  async createBranch(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('branch', new RefNamePipe()) branch: string,
    @Body() body: CreateBranchDto,
    @CurrentUser() user: string,
  ): Promise<{ sha: string }> {
    const fromProblem = revisionProblem(body.from);
    if (fromProblem) throw new BadRequestException(`invalid "from" ${quote(body.from)}: ${fromProblem}`);
    const repo = await this.writable(owner, name, user);
    const args: RefArgs = { name: branch, sha: body.from, author: user };
    return this.queue.submit<{ sha: string }>(repo, 'branch.create', args).catch(httpError);
  }

  @Delete('branches/:branch')
  @HttpCode(204)
  async deleteBranch(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('branch', new RefNamePipe()) branch: string,
    @CurrentUser() user: string,
  ): Promise<void> {
    const repo = await this.writable(owner, name, user);
    await this.queue.submit(repo, 'branch.delete', { name: branch, author: user } satisfies RefArgs).catch(httpError);
  }

  @Post('tags')
  async createTag(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Body() body: CreateTagDto,
    @CurrentUser() user: string,
  ): Promise<{ sha: string }> {
    const problem = refNameProblem(body.name);
    if (problem) throw new BadRequestException(`invalid tag name ${quote(body.name)}: ${problem}`);
    const targetProblem = revisionProblem(body.target);
    if (targetProblem) throw new BadRequestException(`invalid tag target ${quote(body.target)}: ${targetProblem}`);
    const repo = await this.writable(owner, name, user);
    return this.queue.submit<{ sha: string }>(repo, 'tag.create', { name: body.name, sha: body.target, author: user } satisfies RefArgs).catch(httpError);
  }
}

import { Controller, Delete, ForbiddenException, Get, ConflictException, GatewayTimeoutException, NotFoundException, Param } from '@nestjs/common';
import { TaskCancelTimeoutError, TaskFinishedError, TaskNotFoundError, TaskRegistry, type TaskRecord } from '../../cluster/index.js';
import { CurrentUser } from '../auth/auth.guard.js';
import { ReposService } from '../repos/repos.service.js';
import { taskVisibleTo } from './task-visibility.js';

/**
 * The cluster's tasks as users see them: those they started, and those of repositories they may
 * read. Unknown and invisible tasks are both 404 (an id says nothing about private repositories).
 */
@Controller('api/tasks')
export class TasksController {
  constructor(
    private readonly tasks: TaskRegistry,
    private readonly repos: ReposService,
  ) {}

  private visible(task: TaskRecord, user: string): Promise<boolean> {
    return taskVisibleTo(task, user, this.repos);
  }

  private async find(id: string, user: string): Promise<TaskRecord> {
    const task = await this.tasks.get(id);
    if (!task || !(await this.visible(task, user))) throw new NotFoundException(`task ${id} not found`);
    return task;
  }

  @Get()
  async list(@CurrentUser() user: string): Promise<{ tasks: TaskRecord[] }> {
    const all = await this.tasks.list();
    const shown = await Promise.all(all.map(async (t) => ((await this.visible(t, user)) ? t : undefined)));
    return { tasks: shown.filter((t): t is TaskRecord => t !== undefined) };
  }

  @Get(':id')
  async get(@Param('id') id: string, @CurrentUser() user: string): Promise<{ task: TaskRecord }> {
    return { task: await this.find(id, user) };
  }

  /** Cancels on whichever node runs it; answers once it stopped there (its clean-up done). */
  @Delete(':id')
  async cancel(@Param('id') id: string, @CurrentUser() user: string): Promise<{ task: TaskRecord }> {
    const task = await this.find(id, user);
    const repoOwner = task.repo?.split('/')[0];
    if (task.user !== user && repoOwner !== user) throw new ForbiddenException(`only ${task.user} (who started it)${repoOwner ? ` or ${repoOwner}` : ''} may cancel task ${id}`);
    try {
      return { task: await this.tasks.cancel(id) };
    } catch (err) {
      if (err instanceof TaskNotFoundError) throw new NotFoundException(`task ${id} not found`);
      if (err instanceof TaskFinishedError) throw new ConflictException(`task ${id} already finished (${err.state})`);
      if (err instanceof TaskCancelTimeoutError) throw new GatewayTimeoutException(err.message);
      throw err;
    }
  }
}

import { BadRequestException, Body, Controller, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { IsBoolean, IsString } from 'class-validator';
import { CurrentUser } from '../auth/auth.guard.js';
import { FORGE_NODE_CONFIG, type ForgeNodeConfig } from '../config.js';
import { OptionalField } from '../http/optional-field.js';
import { NamePipe } from '../params.js';
import { MigrationsService } from './migrations.service.js';
import { migrationSourceProblem } from './source.js';

export class MigrateDto {
  @IsString() from!: string;
  @OptionalField() @IsBoolean() private?: boolean;
}

/** `POST /api/repos/:owner/:name/migrate` `{ from }`: 202 with the migration task, which runs on this node. */
@Controller('api/repos/:owner/:name/migrate')
export class MigrateController {
  constructor(
    private readonly migrations: MigrationsService,
    @Inject(FORGE_NODE_CONFIG) private readonly config: ForgeNodeConfig,
  ) {}

  @Post()
  @HttpCode(202)
  async migrate(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Body() body: MigrateDto,
    @CurrentUser() user: string,
  ) {
    const problem = migrationSourceProblem(body.from, this.config.dataDir);
    // The value is not echoed: it may be a server path.
    if (problem) throw new BadRequestException(`invalid "from": it ${problem}`);
    const task = await this.migrations.start(owner, name, user, body.from, body.private ?? false);
    return { task: { id: task.id, kind: task.kind, node: task.node, state: task.state } };
  }
}

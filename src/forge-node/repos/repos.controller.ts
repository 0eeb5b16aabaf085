import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { IsBoolean, IsString } from 'class-validator';
import { CurrentUser } from '../auth/auth.guard.js';
import { OptionalField } from '../http/optional-field.js';
import { NamePipe } from '../params.js';
import { ReposService, type Repo } from './repos.service.js';

export class CreateRepoDto {
  @IsString() name!: string;
  @OptionalField() @IsBoolean() private?: boolean;
}

@Controller('api/repos')
export class ReposController {
  constructor(private readonly repos: ReposService) {}

  @Post()
  async create(@Body() body: CreateRepoDto, @CurrentUser() user: string): Promise<Repo> {
    const name = new NamePipe('repository name').transform(body.name);
    return this.repos.create(user, name, body.private ?? false);
  }

  @Get(':owner/:name')
  get(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @CurrentUser() user: string,
  ): Promise<Repo> {
    return this.repos.getVisible(owner, name, user);
  }

  @Delete(':owner/:name')
  @HttpCode(204)
  async delete(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @CurrentUser() user: string,
  ): Promise<void> {
    await this.repos.delete(owner, name, user);
  }

  @Put(':owner/:name/collaborators/:user')
  addCollaborator(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('user', new NamePipe('user name')) collaborator: string,
    @CurrentUser() user: string,
  ): Promise<Repo> {
    return this.repos.setCollaborator(owner, name, collaborator, user, true);
  }

  @Delete(':owner/:name/collaborators/:user')
  removeCollaborator(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('user', new NamePipe('user name')) collaborator: string,
    @CurrentUser() user: string,
  ): Promise<Repo> {
    return this.repos.setCollaborator(owner, name, collaborator, user, false);
  }
}

import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { IsIn, IsString, Length, MaxLength } from 'class-validator';
import { CurrentUser } from '../auth/auth.guard.js';
import { OptionalField } from '../http/optional-field.js';
import { IssueNumberPipe, NamePipe } from '../params.js';
import { IssuesService, type Issue, type IssueState } from './issues.service.js';

export class CreateIssueDto {
  @IsString() @Length(1, 255) title!: string;
  @OptionalField() @IsString() @MaxLength(65_536) body?: string;
}

export class UpdateIssueDto {
  @OptionalField() @IsString() @Length(1, 255) title?: string;
  @OptionalField() @IsString() @MaxLength(65_536) body?: string;
  @OptionalField() @IsIn(['open', 'closed']) state?: IssueState;
}

@Controller('api/repos/:owner/:name/issues')
export class IssuesController {
  constructor(private readonly issues: IssuesService) {}

  @Post()
  create(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Body() body: CreateIssueDto,
    @CurrentUser() user: string,
  ): Promise<Issue> {
    return this.issues.create(owner, name, body.title, body.body ?? '', user);
  }

  @Get()
  list(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @CurrentUser() user: string,
  ): Promise<Issue[]> {
    return this.issues.list(owner, name, user);
  }

  @Get(':number')
  get(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('number', new IssueNumberPipe()) number: number,
    @CurrentUser() user: string,
  ): Promise<Issue> {
    return this.issues.get(owner, name, number, user);
  }

  @Patch(':number')
  update(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('number', new IssueNumberPipe()) number: number,
    @Body() body: UpdateIssueDto,
    @CurrentUser() user: string,
  ): Promise<Issue> {
    return this.issues.update(owner, name, number, body, user);
  }

  @Delete(':number')
  @HttpCode(204)
  delete(
    @Param('owner', new NamePipe('owner')) owner: string,
    @Param('name', new NamePipe('repository name')) name: string,
    @Param('number', new IssueNumberPipe()) number: number,
    @CurrentUser() user: string,
  ): Promise<void> {
    return this.issues.delete(owner, name, number, user);
  }
}

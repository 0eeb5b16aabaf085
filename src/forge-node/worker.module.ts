import { Module } from '@nestjs/common';
import { configProvider, forgeCoreImports } from './app.module.js';
import { GitWriteHandlers } from './git/repo-writes.service.js';

/** A worker-only process: applies repository writes, serves no HTTP. */
@Module({
  imports: [...forgeCoreImports],
  providers: [configProvider, GitWriteHandlers],
})
export class ForgeWorkerModule {}

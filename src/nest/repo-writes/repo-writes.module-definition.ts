import type { ConfigurableModuleAsyncOptions } from '@nestjs/common';
import type { RepoWriteQueueOptions } from '../../repo-writes/index.js';
import { forgeModuleDefinition, type ForgeModuleExtras } from '../configurable-module.js';

export interface RepoWritesModuleOptions extends RepoWriteQueueOptions {
  /** Apply writes in this process (default true); false = only submit them. */
  workers?: boolean;
}

/** A `useClass`/`useExisting` provider for `RepoWritesModule.forRootAsync`. */
export interface RepoWritesOptionsFactory {
  createRepoWritesOptions(): RepoWritesModuleOptions | Promise<RepoWritesModuleOptions>;
}

export interface RepoWritesModuleAsyncOptions
  extends ConfigurableModuleAsyncOptions<RepoWritesModuleOptions, 'createRepoWritesOptions'>,
    ForgeModuleExtras {}

const definition = forgeModuleDefinition<RepoWritesModuleOptions, 'createRepoWritesOptions'>(
  Symbol('REPO_WRITES_OPTIONS'),
  'createRepoWritesOptions',
);

export const ConfigurableRepoWritesModule = definition.ConfigurableModuleClass;
/** Injection token of the options given to RepoWritesModule.forRoot/forRootAsync (without `isGlobal`). */
export const REPO_WRITES_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

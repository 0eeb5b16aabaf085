import type { ConfigurableModuleAsyncOptions } from '@nestjs/common';
import type { ForgeCacheOptions } from '../../cache/index.js';
import { forgeModuleDefinition, type ForgeModuleExtras } from '../configurable-module.js';

/** The ForgeCache options, as `ForgeCacheModule.forRoot` takes them. */
export type ForgeCacheModuleOptions = ForgeCacheOptions;

/** A `useClass`/`useExisting` provider for `ForgeCacheModule.forRootAsync`. */
export interface ForgeCacheOptionsFactory {
  createForgeCacheOptions(): ForgeCacheModuleOptions | Promise<ForgeCacheModuleOptions>;
}

export interface ForgeCacheModuleAsyncOptions
  extends ConfigurableModuleAsyncOptions<ForgeCacheModuleOptions, 'createForgeCacheOptions'>,
    ForgeModuleExtras {}

const definition = forgeModuleDefinition<ForgeCacheModuleOptions, 'createForgeCacheOptions'>(
  Symbol('FORGE_CACHE_OPTIONS'),
  'createForgeCacheOptions',
);

export const ConfigurableForgeCacheModule = definition.ConfigurableModuleClass;
/** Injection token of the options given to ForgeCacheModule.forRoot/forRootAsync (without `isGlobal`). */
export const FORGE_CACHE_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

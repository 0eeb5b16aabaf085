import type { ConfigurableModuleAsyncOptions } from '@nestjs/common';
import type { ForgeBusOptions } from '../bus/index.js';
import { forgeModuleDefinition, type ForgeModuleExtras } from './configurable-module.js';

export interface ForgeBusModuleOptions extends ForgeBusOptions {
  /**
   * Start the event feed once the application has bootstrapped (default true). A process that
   * only publishes (a CLI, a worker without handlers) may turn it off.
   */
  startFeed?: boolean;
}

/** A `useClass`/`useExisting` provider for `ForgeBusModule.forRootAsync`. */
export interface ForgeBusOptionsFactory {
  createForgeBusOptions(): ForgeBusModuleOptions | Promise<ForgeBusModuleOptions>;
}

export interface ForgeBusModuleAsyncOptions
  extends ConfigurableModuleAsyncOptions<ForgeBusModuleOptions, 'createForgeBusOptions'>,
    ForgeModuleExtras {}

const definition = forgeModuleDefinition<ForgeBusModuleOptions, 'createForgeBusOptions'>(
  Symbol('FORGE_BUS_OPTIONS'),
  'createForgeBusOptions',
);

export const ConfigurableForgeBusModule = definition.ConfigurableModuleClass;
/** Injection token of the options given to ForgeBusModule.forRoot/forRootAsync (without `isGlobal`). */
export const FORGE_BUS_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

import type { ConfigurableModuleAsyncOptions, InjectionToken } from '@nestjs/common';
import type { SseHubOptions } from '../../sse/index.js';
import { forgeModuleDefinition, type ForgeModuleExtras } from '../configurable-module.js';

export interface SseModuleOptions extends SseHubOptions {
  /**
   * The provider (class or token, anywhere in the application) that answers the hub's access
   * questions (an SseAccessPolicy). Looked up when first needed, so it may depend on the
   * application's own services.
   */
  policy: InjectionToken;
}

/** A `useClass`/`useExisting` provider for `SseModule.forRootAsync`. */
export interface SseOptionsFactory {
  createSseOptions(): SseModuleOptions | Promise<SseModuleOptions>;
}

export interface SseModuleAsyncOptions extends ConfigurableModuleAsyncOptions<SseModuleOptions, 'createSseOptions'>, ForgeModuleExtras {}

const definition = forgeModuleDefinition<SseModuleOptions, 'createSseOptions'>(Symbol('SSE_OPTIONS'), 'createSseOptions');

export const ConfigurableSseModule = definition.ConfigurableModuleClass;
/** Injection token of the options given to SseModule.forRoot/forRootAsync (without `isGlobal`). */
export const SSE_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

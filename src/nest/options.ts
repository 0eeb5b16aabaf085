import type { InjectionToken, ModuleMetadata, OptionalFactoryDependency } from '@nestjs/common';
import type { ForgeBusOptions } from '../bus/index.js';

export interface ForgeBusModuleOptions extends ForgeBusOptions {
  /**
   * Start the event feed once the application has bootstrapped (default true). A process that
   * only publishes (a CLI, a worker without handlers) may turn it off.
   */
  startFeed?: boolean;
}

export interface ForgeBusModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  useFactory: (...args: any[]) => ForgeBusModuleOptions | Promise<ForgeBusModuleOptions>;
  inject?: (InjectionToken | OptionalFactoryDependency)[];
}

import { ConfigurableModuleBuilder, type ConfigurableModuleAsyncOptions, type ConfigurableModuleHost } from '@nestjs/common';
import { ForgeBusConfigError } from '../bus/index.js';

/**
 * The extra every forgebus module accepts next to its own options, in `forRoot` and
 * `forRootAsync` alike.
 */
export interface ForgeModuleExtras {
  /**
   * Register the module globally (default true): its providers (ForgeBus, ForgeCache, SseHub,
   * RepoWriteQueue) are per-process singletons configured once in the root module, and the
   * capability modules inject ForgeBus themselves. With `false`, only modules that import this
   * dynamic module see them.
   */
  isGlobal?: boolean;
}

const IS_GLOBAL_BY_DEFAULT = true;

/**
 * The ConfigurableModuleBuilder setup shared by the four forgebus modules: `forRoot` /
 * `forRootAsync`, a `create<Name>Options()` factory method for `useClass`/`useExisting`, the
 * `isGlobal` extra, and a symbol token for the options (a string token could collide with
 * another library's module of the same name).
 */
export function forgeModuleDefinition<Options extends object, FactoryMethod extends string>(
  optionsToken: symbol,
  factoryMethod: FactoryMethod,
): ConfigurableModuleHost<Options, 'forRoot', FactoryMethod, ForgeModuleExtras> {
  return new ConfigurableModuleBuilder<Options>({ optionsInjectionToken: optionsToken })
    .setClassMethodName('forRoot')
    .setFactoryMethodName(factoryMethod)
    .setExtras<ForgeModuleExtras>({ isGlobal: IS_GLOBAL_BY_DEFAULT }, (definition, extras) => ({
      ...definition,
      // `isGlobal: undefined` (e.g. spread from a config object) means the default, not false.
      global: extras.isGlobal ?? IS_GLOBAL_BY_DEFAULT,
    }))
    .build();
}

/**
 * Nest's builder silently registers `useClass: undefined` when no source is given, and picks one
 * when several are: both end in an unrelated-looking DI error at start-up. Fail at the call instead.
 */
export function assertOneOptionsSource(moduleName: string, options: ConfigurableModuleAsyncOptions<unknown, string>): void {
  const given = (['useFactory', 'useClass', 'useExisting'] as const).filter((key) => options[key] !== undefined);
  if (given.length !== 1) {
    throw new ForgeBusConfigError(
      `${moduleName}.forRootAsync needs exactly one of useFactory, useClass or useExisting (got ${given.join(', ') || 'none'})`,
    );
  }
}

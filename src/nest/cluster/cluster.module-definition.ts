import type { ConfigurableModuleAsyncOptions } from '@nestjs/common';
import type { MembershipOptions } from '../../cluster/index.js';
import { forgeModuleDefinition, type ForgeModuleExtras } from '../configurable-module.js';

export interface ClusterModuleOptions extends MembershipOptions {
  /** How long node-control requests wait for an answer (NodeControl, default 2 s). */
  controlTimeoutMs?: number;
}

/** A `useClass`/`useExisting` provider for `ClusterModule.forRootAsync`. */
export interface ClusterOptionsFactory {
  createClusterOptions(): ClusterModuleOptions | Promise<ClusterModuleOptions>;
}

export interface ClusterModuleAsyncOptions extends ConfigurableModuleAsyncOptions<ClusterModuleOptions, 'createClusterOptions'>, ForgeModuleExtras {}

const definition = forgeModuleDefinition<ClusterModuleOptions, 'createClusterOptions'>(Symbol('CLUSTER_OPTIONS'), 'createClusterOptions');

export const ConfigurableClusterModule = definition.ConfigurableModuleClass;
/** Injection token of the options given to ClusterModule.forRoot/forRootAsync (without `isGlobal`). */
export const CLUSTER_OPTIONS = definition.MODULE_OPTIONS_TOKEN;

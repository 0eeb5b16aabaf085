import { Inject, Injectable, Logger, Module, type BeforeApplicationShutdown, type DynamicModule, type OnApplicationBootstrap, type Provider } from '@nestjs/common';
import { boolean, checkOptions, ForgeBus, type OptionRules } from '../../bus/index.js';
import { CronScheduler, Locks, Membership, NodeControl, TaskRegistry } from '../../cluster/index.js';
import { DiscoveryModule, DiscoveryService, MetadataScanner } from '@nestjs/core';
import { findDecoratedMethods } from '../decorated-methods.js';
import { ClusterCronMark } from './cluster-cron.decorator.js';
import { MEMBERSHIP_OPTION_RULES } from '../../cluster/membership.js';
import { NODE_CONTROL_OPTION_RULES } from '../../cluster/node-control.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from '../configurable-module.js';
import { CLUSTER_OPTIONS, ConfigurableClusterModule, type ClusterModuleAsyncOptions, type ClusterModuleOptions } from './cluster.module-definition.js';

const MODULE_OPTION_RULES: OptionRules<ClusterModuleOptions & ForgeModuleExtras> = {
  ...MEMBERSHIP_OPTION_RULES,
  controlTimeoutMs: NODE_CONTROL_OPTION_RULES.timeoutMs,
  isGlobal: boolean,
};

const membershipProvider: Provider = {
  provide: Membership,
  inject: [ForgeBus, CLUSTER_OPTIONS],
  useFactory: (bus: ForgeBus, { controlTimeoutMs: _timeout, ...options }: ClusterModuleOptions) => {
    checkOptions('ClusterModule', options, MODULE_OPTION_RULES);
    return new Membership(bus, { logger: new Logger('Membership'), ...options });
  },
};

const locksProvider: Provider = {
  provide: Locks,
  inject: [ForgeBus],
  useFactory: (bus: ForgeBus) => new Locks(bus, { logger: new Logger('Locks') }),
};

const cronProvider: Provider = {
  provide: CronScheduler,
  inject: [ForgeBus, Locks],
  useFactory: (bus: ForgeBus, locks: Locks) => new CronScheduler(bus, locks, { logger: new Logger('ClusterCron') }),
};

const controlProvider: Provider = {
  provide: NodeControl,
  inject: [ForgeBus, Membership, CLUSTER_OPTIONS],
  useFactory: (bus: ForgeBus, membership: Membership, options: ClusterModuleOptions) =>
    new NodeControl(bus, membership, { logger: new Logger('NodeControl'), timeoutMs: options.controlTimeoutMs }),
};

// Tasks: registered with NodeControl when built (its `tasks.cancel` verb), opened at bootstrap.
const tasksProvider: Provider = {
  provide: TaskRegistry,
  inject: [ForgeBus, Membership, NodeControl],
  useFactory: (bus: ForgeBus, membership: Membership, control: NodeControl) => new TaskRegistry(bus, membership, control, { logger: new Logger('Tasks') }),
};

/** Joins and answers control requests from bootstrap; leaves (its record deleted at once) before the bus drains. */
@Injectable()
class ClusterLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(
    @Inject(Membership) private readonly membership: Membership,
    @Inject(NodeControl) private readonly control: NodeControl,
    @Inject(CronScheduler) private readonly cron: CronScheduler,
    @Inject(TaskRegistry) private readonly tasks: TaskRegistry,
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.membership.start();
    await this.tasks.open();
    this.control.start();
    for (const { instance, method, metadata } of findDecoratedMethods({ discovery: this.discovery, scanner: this.scanner }, ClusterCronMark)) {
      this.cron.schedule(metadata.name, metadata.schedule, (ctx) => method.call(instance, ctx), metadata.options);
    }
    await this.cron.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.cron.stop();
    // Tasks still running here are aborted and recorded failed before this node stops answering.
    await this.tasks.close();
    this.control.stop();
    await this.membership.stop();
  }
}

function withMembership(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), membershipProvider, controlProvider, locksProvider, cronProvider, tasksProvider, ClusterLifecycle],
    exports: [Membership, NodeControl, Locks, CronScheduler, TaskRegistry, CLUSTER_OPTIONS],
  };
}

/**
 * `ClusterModule.forRoot(options)` / `forRootAsync(...)`: this process's cluster Membership and
 * NodeControl (needs ForgeBusModule), joined at bootstrap and left at shutdown. Global by default,
 * like the others.
 */
@Module({})
export class ClusterModule extends ConfigurableClusterModule {
  static override forRoot(options: ClusterModuleOptions & ForgeModuleExtras = {}): DynamicModule {
    checkOptions('ClusterModule', options, MODULE_OPTION_RULES);
    return withMembership(super.forRoot(options));
  }

  static override forRootAsync(options: ClusterModuleAsyncOptions): DynamicModule {
    assertOneOptionsSource('ClusterModule', options);
    return withMembership(super.forRootAsync(options));
  }
}

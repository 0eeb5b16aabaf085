import { Inject, Injectable, Logger, Module, type BeforeApplicationShutdown, type DynamicModule, type OnApplicationBootstrap, type Provider } from '@nestjs/common';
import { boolean, checkOptions, ForgeBus, type OptionRules } from '../../bus/index.js';
import { Membership } from '../../cluster/index.js';
import { MEMBERSHIP_OPTION_RULES } from '../../cluster/membership.js';
import { assertOneOptionsSource, type ForgeModuleExtras } from '../configurable-module.js';
import { CLUSTER_OPTIONS, ConfigurableClusterModule, type ClusterModuleAsyncOptions, type ClusterModuleOptions } from './cluster.module-definition.js';

const MODULE_OPTION_RULES: OptionRules<ClusterModuleOptions & ForgeModuleExtras> = { ...MEMBERSHIP_OPTION_RULES, isGlobal: boolean };

const membershipProvider: Provider = {
  provide: Membership,
  inject: [ForgeBus, CLUSTER_OPTIONS],
  useFactory: (bus: ForgeBus, options: ClusterModuleOptions) => {
    checkOptions('ClusterModule', options, MODULE_OPTION_RULES);
    return new Membership(bus, { logger: new Logger('Membership'), ...options });
  },
};

/** Joins at bootstrap; leaves (its record deleted at once) before the bus drains. */
@Injectable()
class MembershipLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(@Inject(Membership) private readonly membership: Membership) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.membership.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.membership.stop();
  }
}

function withMembership(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    providers: [...(definition.providers ?? []), membershipProvider, MembershipLifecycle],
    exports: [Membership, CLUSTER_OPTIONS],
  };
}

/**
 * `ClusterModule.forRoot(options)` / `forRootAsync(...)`: this process's cluster Membership (needs
 * ForgeBusModule), joined at bootstrap and left at shutdown. Global by default, like the others.
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

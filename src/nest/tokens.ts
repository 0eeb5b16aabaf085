/** Injection token of the options given to ForgeBusModule.forRoot/forRootAsync. */
export const FORGE_BUS_OPTIONS = Symbol('FORGE_BUS_OPTIONS');
/** Metadata key of @OnForgeEvent. */
export const ON_FORGE_EVENT = 'forgebus:on-forge-event';

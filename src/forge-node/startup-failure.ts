import { SettingsDriftError } from '../index.js';

/** The environment variable of the example node behind each cluster-wide setting it exposes. */
const SETTING_VARIABLES: Record<string, string> = {
  'writes.partitions': 'FORGE_WRITE_PARTITIONS',
  'writes.ackWaitMs': 'FORGE_WRITE_ACK_WAIT_MS',
  'events.maxAgeMs': 'FORGE_EVENTS_MAX_AGE_MS',
  replicas: 'FORGE_REPLICAS',
};

/**
 * Why the node did not start, in the operator's terms: a setting the cluster disagrees with is
 * named by the variable that sets it, with the value to use.
 */
export function startupFailure(err: Error): string {
  if (err instanceof SettingsDriftError) {
    const variable = SETTING_VARIABLES[err.setting];
    if (variable) {
      return `${variable}=${JSON.stringify(err.mine)} differs from the cluster's ${JSON.stringify(err.recorded)}: start this node with ${variable}=${JSON.stringify(err.recorded)}. ${err.message}`;
    }
  }
  return err.message;
}

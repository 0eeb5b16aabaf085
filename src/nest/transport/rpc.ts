import { encodeToken } from '../../bus/index.js';

/** Core-NATS subject of a @MessagePattern: `forge.rpc.<encoded pattern>`. */
export function rpcSubject(pattern: string): string {
  return `forge.rpc.${encodeToken(pattern)}`;
}

/** Queue group of RPC subscriptions: one node of the cluster answers each request. */
export const RPC_QUEUE = 'forgebus-rpc';

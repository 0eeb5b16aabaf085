import { isAbsolute, resolve } from 'node:path';

/** The forge node's configuration, from the environment (see README "Configuration"). */
export interface ForgeNodeConfig {
  port: number;
  host: string;
  nodeId: string;
  natsUrl: string;
  dataDir: string;
  secret: string;
}

export class ForgeNodeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForgeNodeConfigError';
  }
}

/** Validates the environment; used by @nestjs/config's `validate` so a bad value stops start-up. */
export function loadForgeNodeConfig(env: Record<string, unknown> = process.env): ForgeNodeConfig {
  const str = (key: string) => (typeof env[key] === 'string' && (env[key] as string).trim() !== '' ? (env[key] as string).trim() : undefined);
  const port = Number(str('PORT') ?? '3001');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ForgeNodeConfigError(`PORT must be a TCP port number, got "${str('PORT')}"`);
  const nodeId = str('NODE_ID') ?? `node-${port}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(nodeId)) {
    throw new ForgeNodeConfigError(`NODE_ID must be 1-64 characters of [A-Za-z0-9_-], got "${nodeId}"`);
  }
  const secret = str('FORGE_SECRET');
  if (!secret) throw new ForgeNodeConfigError('FORGE_SECRET is required: the HS256 key that signs user tokens (use the same value on every node)');
  if (secret.length < 16) throw new ForgeNodeConfigError('FORGE_SECRET must be at least 16 characters');
  const dataDir = str('FORGE_DATA_DIR') ?? '.forgebus-data';
  return {
    port,
    host: str('HOST') ?? '127.0.0.1',
    nodeId,
    natsUrl: str('NATS_URL') ?? 'nats://127.0.0.1:4222',
    dataDir: isAbsolute(dataDir) ? dataDir : resolve(dataDir),
    secret,
  };
}

export const FORGE_NODE_CONFIG = Symbol('FORGE_NODE_CONFIG');

#!/usr/bin/env node
// `npm run token -- <user> [--ttl 1h]`: a user token of the example forge node, signed with
// FORGE_SECRET, printed alone on the last line of stdout (so scripts can take `| tail -1`).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { signUserToken } from '../forge-node/auth/tokens.js';
import { nameProblem } from '../forge-node/params.js';

const TTL = /^(\d+)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|week|weeks|y|year|years)$/;

function ttl(value: string): string {
  if (!TTL.test(value.trim())) throw new InvalidArgumentError('a duration such as 90s, 15m, 1h, 30d or 1y');
  return value.trim();
}

/** FORGE_SECRET, or the development secret npm start keeps in the data directory. */
function secret(): { value: string; from: string } {
  if (process.env.FORGE_SECRET) return { value: process.env.FORGE_SECRET, from: 'FORGE_SECRET' };
  const file = join(resolve(process.env.FORGE_DATA_DIR ?? '.forgebus-data'), 'dev-secret');
  if (existsSync(file)) return { value: readFileSync(file, 'utf8').trim(), from: `${file} (the secret npm start made)` };
  throw new Error('FORGE_SECRET is not set and there is no npm start data directory here: set FORGE_SECRET to the secret the nodes use (or FORGE_DATA_DIR to npm start\'s data directory)');
}

const program = new Command('forgebus-token')
  .description('Print a user token for the example forge node (HS256, signed with FORGE_SECRET)')
  .argument('<user>', 'the user name the token is for (its "sub")')
  .option('--ttl <duration>', 'how long it is valid (e.g. 15m, 1h, 30d)', ttl, '30d')
  .action(async (user: string, options: { ttl: string }) => {
    const problem = nameProblem(user);
    if (problem) throw new Error(`user name "${user.slice(0, 100)}" ${problem}`);
    const key = secret();
    if (key.value.length < 16) throw new Error(`the secret from ${key.from} is shorter than 16 characters: the nodes refuse it too`);
    const token = await signUserToken(key.value, user, options.ttl);
    console.error(`token for ${user}, valid ${options.ttl}, signed with ${key.from}; use it as "Authorization: Bearer <token>", or as the password of git over HTTP`);
    console.log(token);
  });

program.parseAsync().catch((err: Error) => {
  console.error(`forgebus-token: ${err.message}`);
  process.exit(1);
});

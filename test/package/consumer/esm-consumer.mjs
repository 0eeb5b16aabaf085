// The ESM way in: static imports of every entry point of the installed package.
import * as core from 'forgebus';
import * as cache from 'forgebus/cache';
import * as sse from 'forgebus/sse';
import * as repoWrites from 'forgebus/repo-writes';
import * as nest from 'forgebus/nest';
import * as cluster from 'forgebus/cluster';
import scenario from './scenario.cjs';

const result = await scenario.run({ core, cache, sse, repoWrites }, { servers: process.env.NATS_URL, nodeId: 'esm-consumer' });
result.nestExports = Object.keys(nest).sort();
result.clusterExports = Object.keys(cluster).sort();
console.log(JSON.stringify(result));

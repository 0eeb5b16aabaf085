// The CommonJS way in: require() of every entry point (Node >= 20.19 loads ES modules from require).
'use strict';
const core = require('forgebus');
const cache = require('forgebus/cache');
const sse = require('forgebus/sse');
const repoWrites = require('forgebus/repo-writes');
const nest = require('forgebus/nest');
const cluster = require('forgebus/cluster');
const { run } = require('./scenario.cjs');

run({ core, cache, sse, repoWrites }, { servers: process.env.NATS_URL, nodeId: 'cjs-consumer' }).then(
  (result) => {
    result.nestExports = Object.keys(nest).sort();
    result.clusterExports = Object.keys(cluster).sort();
    console.log(JSON.stringify(result));
  },
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

/**
 * Case d, subscriber side: a separate process that connects with ForgeBus, registers one
 * `issue.created` handler on the event feed and counts. Started by bench/main via fork().
 */
import { ForgeBus } from '../src/bus/bus.js';
import { ChildCounter, childArgs, childMain, sendToParent } from './common.js';

const { url } = childArgs();

const bus = await ForgeBus.connect({ nodeId: 'bench-sub', connection: { servers: url } });
const counter = new ChildCounter(sendToParent, () => ({ ...bus.feed.stats }));
bus.on('issue.created', () => {
  counter.hit();
});
await bus.start();
childMain(counter, () => bus.close());
sendToParent({ type: 'ready', pid: process.pid });

/**
 * Diagnostic row d0, subscriber side: a plain nats.js ordered consumer on FORGE_EVENTS starting
 * after the last stored event, decoding each event's JSON and counting: what any JetStream
 * reader pays, without the SDK's validation and dispatch. Started by bench/main via fork().
 */
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { EVENTS_STREAM } from '../src/bus/streams.js';
import { ChildCounter, childArgs, childMain, sendToParent } from './common.js';

const { url } = childArgs();
const nc = await connect({ servers: url, name: 'bench-raw-sub' });
const info = await (await jetstreamManager(nc)).streams.info(EVENTS_STREAM);
const consumer = await jetstream(nc).consumers.get(EVENTS_STREAM, {
  deliver_policy: DeliverPolicy.StartSequence,
  opt_start_seq: info.state.last_seq + 1,
});
const messages = await consumer.consume({ max_messages: 1024 });
const counter = new ChildCounter(sendToParent);
void (async () => {
  for await (const m of messages) {
    m.json(); // every real handler needs the event decoded
    counter.hit();
  }
})();
childMain(counter, async () => {
  await messages.close();
  await nc.close();
});
sendToParent({ type: 'ready', pid: process.pid });

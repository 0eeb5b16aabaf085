import type { Msg, MsgHdrs, Payload } from '@nats-io/transport-node';
import type { Deserializer, IncomingEvent, IncomingRequest, IncomingResponse, OutgoingRequest, OutgoingResponse, Serializer } from '@nestjs/microservices';
import { ForgeBusRpcError } from './errors.js';

/**
 * What a forgebus serializer returns: the message body, or the `{ data, headers }` record that
 * Nest's own NATS serializer (NatsRecordSerializer) produces.
 */
export type ForgeBusWireMessage = Payload | { data: Payload; headers?: MsgHdrs };

/**
 * Wire format of `@MessagePattern` requests and their replies on a ForgeBusServer, as Nest's
 * NATS transport takes it. Events are not affected: `@EventPattern` handlers get envelopes that
 * the process's event feed has already decoded and validated against the event catalog, in the
 * one format every node, cache and SSE hub of the cluster shares.
 */
export interface ForgeBusServerCodecOptions {
  /** Reply packet (`{ id, response?, err?, isDisposed? }`) → message. Default: JSON. */
  serializer?: Serializer<OutgoingResponse, ForgeBusWireMessage>;
  /**
   * Request message (the nats.js Msg, headers included) → `{ id, data }`, called with
   * `{ channel: pattern, replyTo }`. Default: JSON `{ id, data }`. Throwing answers the caller
   * with an error instead of calling the handler.
   */
  deserializer?: Deserializer<Msg, IncomingRequest | IncomingEvent>;
}

/**
 * Wire format of `send()` requests and their replies on a ForgeBusClient (pair it with the
 * server's). `emit()` is not affected: it publishes a forge event, whose format is the bus's.
 */
export interface ForgeBusClientCodecOptions {
  /** Request packet (`{ pattern, data, id }`) → message. Default: JSON `{ id, data }` (the pattern is in the subject). */
  serializer?: Serializer<OutgoingRequest, ForgeBusWireMessage>;
  /** Reply message (the nats.js Msg) → `{ id, response?, err?, isDisposed? }`. Default: JSON. */
  deserializer?: Deserializer<Msg, IncomingResponse>;
}

export class JsonRequestSerializer implements Serializer<OutgoingRequest, string> {
  serialize({ id, data }: OutgoingRequest): string {
    return JSON.stringify({ id, data });
  }
}

export class JsonRequestDeserializer implements Deserializer<Msg, IncomingRequest> {
  deserialize(msg: Msg, options?: { channel?: string }): IncomingRequest {
    const request = msg.json<Partial<IncomingRequest> | null>();
    if (typeof request !== 'object' || request === null) throw new ForgeBusRpcError('RPC_CODEC', 'not a JSON object');
    return { id: request.id!, pattern: options?.channel, data: request.data };
  }
}

export class JsonResponseSerializer implements Serializer<OutgoingResponse, string> {
  serialize(packet: OutgoingResponse): string {
    return JSON.stringify(packet);
  }
}

export class JsonResponseDeserializer implements Deserializer<Msg, IncomingResponse> {
  deserialize(msg: Msg): IncomingResponse {
    const response = msg.json<IncomingResponse | null>();
    if (typeof response !== 'object' || response === null) throw new ForgeBusRpcError('RPC_CODEC', 'not a JSON object');
    return response;
  }
}

/** A serializer's output as nats.js publishes it; refuses what would not survive the trip. */
export function toWireMessage(output: unknown, serializerOf: string): { data: Payload; headers?: MsgHdrs } {
  if (typeof output === 'string' || output instanceof Uint8Array) return { data: output };
  if (typeof output === 'object' && output !== null && 'data' in output) {
    const { data, headers } = output as { data: unknown; headers?: MsgHdrs };
    if (typeof data === 'string' || data instanceof Uint8Array) return { data, headers };
  }
  throw new ForgeBusRpcError(
    'RPC_CODEC',
    `the ${serializerOf} serializer returned ${output === null ? 'null' : typeof output}: ` +
      'return a string, a Uint8Array or { data: string | Uint8Array, headers? }',
  );
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

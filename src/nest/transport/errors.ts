import { ForgeBusError } from '../../bus/index.js';

export type ForgeBusRpcErrorCode =
  /** No reply arrived in time (ForgeBusClientOptions.requestTimeoutMs). */
  | 'RPC_TIMEOUT'
  /** No process subscribes to the pattern's subject. */
  | 'RPC_NO_RESPONDERS'
  /** A serializer or deserializer failed or produced something that cannot travel. */
  | 'RPC_CODEC'
  /** The client could not connect, or NATS refused the request (closed connection, permissions). */
  | 'RPC_TRANSPORT';

/** A `send()` through ForgeBusClient failed on the client's side of the wire. */
export class ForgeBusRpcError extends ForgeBusError {
  declare readonly code: ForgeBusRpcErrorCode;

  constructor(code: ForgeBusRpcErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

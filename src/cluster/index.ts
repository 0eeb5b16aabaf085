/**
 * `forgebus/cluster` — coordination of the nodes of a forge cluster: membership (who is alive,
 * with what, joins and departures, on a KV bucket with a TTL) and node-addressed control
 * (ping, status and the application's own verbs, to one node or scattered to all), and locks
 * with leases and fencing tokens.
 */
export { Membership, MEMBERS_BUCKET, type MemberRecord, type MembershipChange, type MembershipOptions } from './membership.js';
export {
  NodeControl,
  NodeControlError,
  NodeControlTimeoutError,
  UnknownNodeError,
  type ControlHandler,
  type NodeControlOptions,
  type ScatterResult,
} from './node-control.js';
export { Locks, LockLostError, LOCKS_BUCKET, LockTimeoutError, type LockGrant, type LockOptions, type LocksOptions } from './locks.js';

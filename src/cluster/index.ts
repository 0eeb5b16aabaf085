/**
 * `forgebus/cluster` — coordination of the nodes of a forge cluster: membership (who is alive,
 * with what, joins and departures, on a KV bucket with a TTL) and node-addressed control
 * (ping, status and the application's own verbs, to one node or scattered to all), locks with
 * leases and fencing tokens, and cluster cron (each tick runs once in the cluster).
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
export {
  CronScheduler,
  CRON_CLAIMS_BUCKET,
  CRON_RUNS_STREAM,
  type CronSchedulerOptions,
  type CronContext,
  type CronJobOptions,
  type CronOutcome,
  type CronRun,
} from './cron.js';
export {
  TaskRegistry,
  TASKS_BUCKET,
  TaskNotFoundError,
  TaskFinishedError,
  TaskCancelTimeoutError,
  TaskRegistryClosedError,
  type TaskRecord,
  type TaskState,
  type TaskContext,
  type StartTaskOptions,
  type TaskRecoveryHandler,
  type TaskRegistryOptions,
} from './tasks.js';

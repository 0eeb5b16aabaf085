/**
 * `forgebus/cluster` — coordination of the nodes of a forge cluster: membership (who is alive,
 * with what, joins and departures, on a KV bucket with a TTL).
 */
export { Membership, MEMBERS_BUCKET, type MemberRecord, type MembershipChange, type MembershipOptions } from './membership.js';

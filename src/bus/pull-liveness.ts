/**
 * Pull options for consumers that must notice a lost NATS server within seconds. A pull request
 * waits on the server that leads the consumer; when that server dies, a client connected to
 * another server is not disconnected and gets no error: only the missing idle heartbeats tell
 * nats.js to pull again (from the new leader). With nats.js's defaults (30 s expiry, heartbeats
 * every 15 s, two missed) a consumer stays silent for 30 s after its leader's server died.
 * Costs one small heartbeat per second per waiting consumer while idle.
 */
export const FAILOVER_PULL = { expires: 10_000, idle_heartbeat: 1_000 } as const;

/**
 * `forgebus/sse` — Server-Sent Events for browsers on any node: `new SseHub(bus, policy)` fans
 * the feed out to streams whose event ids are FORGE_EVENTS sequences, so a browser resumes on any
 * node with `Last-Event-ID` and gets exactly what it missed; the access policy decides who reads
 * which repository, re-checked when access changes.
 */
export { SseHub, type SseHubOptions, type SseHubStats, type SseStreamRequest } from './hub.js';
export type { AccessChange, SseAccessPolicy } from './access.js';
export type { SseClient, SseResponse, SseSocket } from './client.js';
export { InvalidLastEventIdError, parseLastEventId, type LastEventId } from './errors.js';

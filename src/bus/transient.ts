import { JetStreamApiError } from '@nats-io/jetstream';
import { errors } from '@nats-io/transport-node';

/**
 * Whether a failed NATS or JetStream request may succeed if made again in a moment: nobody
 * answered (a replicated stream or bucket electing a leader after a server loss answers nothing
 * for seconds), the request timed out, or JetStream said it is temporarily unavailable. Errors
 * that will not go away on their own (permissions, bad requests, wrong revision) are not.
 */
export function isTransientNatsError(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  // nats.js reports "no responders" to a JetStream request as JetStreamNotEnabled (not exported).
  if (err instanceof errors.TimeoutError || err instanceof errors.NoRespondersError || err.name === 'JetStreamNotEnabled') return true;
  if (err instanceof errors.ConnectionError || err instanceof errors.ClosedConnectionError || err instanceof errors.DrainingConnectionError) return false;
  if (err instanceof JetStreamApiError) return err.status === 503 || /temporarily unavailable|no suitable peers/i.test(err.message);
  return isTransientNatsError(err.cause, depth + 1);
}

/**
 * Runs `attempt` until it succeeds, fails for a reason that will not pass, or `budgetMs` is
 * spent; `onRetry` is told of each transient failure (e.g. to keep a message's ack wait open).
 */
export async function retryTransient<T>(attempt: () => Promise<T>, budgetMs: number, onRetry?: (err: Error) => void): Promise<T> {
  const deadline = Date.now() + budgetMs;
  let pause = 100;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!isTransientNatsError(err) || Date.now() + pause > deadline) throw err;
      onRetry?.(err as Error);
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(1_000, pause * 2);
    }
  }
}

/**
 * An error's message for a log line, saying what a transient one most likely means: nats.js
 * reports "no responders" to a JetStream request as "jetstream is not enabled", which misleads
 * during the seconds a replicated stream or bucket elects a new leader.
 */
export function describeNatsError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return isTransientNatsError(err) ? `${message} (no JetStream answer: a leader election after a server loss, or NATS unreachable; retried)` : message;
}

import type { KV } from '@nats-io/kv';

/**
 * The NATS server's clock, as seen from this process: the offset between the timestamp the server
 * gives a KV write and the local time halfway through that write. Schedules based on it agree
 * across nodes whatever their own clocks say (within the round trip).
 */
export class ServerClock {
  private offsetMs = 0;
  private measuredAt = -Infinity;

  constructor(
    private readonly kv: KV,
    private readonly probeKey: string,
    private readonly refreshMs = 30_000,
  ) {}

  /** The server's time now (measured again when the last measurement is older than refreshMs). */
  async now(): Promise<number> {
    if (performance.now() - this.measuredAt > this.refreshMs) await this.measure();
    return Date.now() + this.offsetMs;
  }

  /** The last known server time, without a round trip. */
  nowSync(): number {
    return Date.now() + this.offsetMs;
  }

  async measure(): Promise<void> {
    const sent = Date.now();
    await this.kv.put(this.probeKey, '');
    const received = Date.now();
    const entry = await this.kv.get(this.probeKey);
    if (!entry) return;
    this.offsetMs = entry.created.getTime() - (sent + received) / 2;
    this.measuredAt = performance.now();
  }
}

/** The logging surface the core needs; Nest's Logger and `console` both fit. */
export interface BusLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const consoleLogger: BusLogger = {
  log: (m) => console.log(`[forgebus] ${m}`),
  warn: (m) => console.warn(`[forgebus] ${m}`),
  error: (m) => console.error(`[forgebus] ${m}`),
};

export const silentLogger: BusLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };

/**
 * Lets through at most `limit` lines per `windowMs`, then one summary of how many were
 * suppressed: a flood of bad messages must be visible without drowning the log.
 */
export class RateLimitedLog {
  private windowStart = 0;
  private count = 0;
  private suppressed = 0;

  constructor(
    private readonly write: (message: string) => void,
    private readonly limit = 20,
    private readonly windowMs = 10_000,
  ) {}

  line(message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.suppressed > 0) this.write(`${this.suppressed} similar message(s) suppressed in the last ${this.windowMs} ms`);
      this.windowStart = now;
      this.count = 0;
      this.suppressed = 0;
    }
    if (this.count++ < this.limit) this.write(message);
    else this.suppressed++;
  }
}

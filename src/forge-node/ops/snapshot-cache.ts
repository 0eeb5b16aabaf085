/**
 * Keeps the last value of an expensive read for `maxAgeMs` after it completed, and lets every
 * caller that arrives while a read runs share that read: many browsers polling the operations
 * view cost one collection per interval, not one each. A failed read is not kept.
 */
export class SnapshotCache<T> {
  private last?: { value: T; at: number };
  private running?: Promise<T>;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.last && this.clock() - this.last.at < this.maxAgeMs) return Promise.resolve(this.last.value);
    if (this.running) return this.running;
    const running = this.read().then(
      (value) => {
        this.last = { value, at: this.clock() };
        this.running = undefined;
        return value;
      },
      (err: unknown) => {
        this.running = undefined;
        throw err;
      },
    );
    this.running = running;
    return running;
  }
}

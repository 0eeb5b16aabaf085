/**
 * SSE bench: preloaded into the forge node processes of the sse cases (NODE_OPTIONS
 * `--expose-gc --import=<this file>`); nothing in src/ changes.
 *
 * - SIGWINCH (Nest's shutdown hooks take SIGUSR2): a full garbage collection, then one line on
 *   stderr: `forgebus-bench-mem <n> {"rss":…,"heapUsed":…,…,"loopMaxMs":…}`, n counting from 1,
 *   so the bench can wait for the answer to its n-th signal. `loopMaxMs`/`loopP99Ms`: the
 *   longest and p99 event-loop delay since the previous signal (perf_hooks, 1 ms resolution);
 *   the stall of this signal's own GC is left out.
 * - SIGURG, only with FORGEBUS_BENCH_SSE_PROFILE=<dir>: starts a CPU profile (inspector, sampling
 *   every 100 µs); the next SIGURG stops it and writes `<dir>/forge-node-<pid>-<k>.cpuprofile`
 *   (open it in Chrome DevTools or speedscope), then prints `forgebus-bench-profile <k> <file>`.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
let n = 0;
process.on('SIGWINCH', () => {
  const loopMaxMs = loop.max / 1e6;
  const loopP99Ms = loop.percentile(99) / 1e6;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  process.stderr.write(
    `forgebus-bench-mem ${++n} ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, gc: gc !== undefined, loopMaxMs, loopP99Ms })}\n`,
  );
  // The late timer tick this GC causes lands in the next window: drop it.
  setTimeout(() => loop.reset(), 20);
});

const profileDir = process.env.FORGEBUS_BENCH_SSE_PROFILE;
if (profileDir) {
  const session = new Session();
  session.connect();
  let running = false;
  let k = 0;
  process.on('SIGURG', () => {
    if (!running) {
      running = true;
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 100 }, () => session.post('Profiler.start')));
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, result) => {
      const file = join(profileDir, `forge-node-${process.pid}-${++k}.cpuprofile`);
      if (!err) writeFileSync(file, JSON.stringify(result.profile));
      process.stderr.write(`forgebus-bench-profile ${k} ${err ? `error ${err.message}` : file}\n`);
    });
  });
}

/**
 * `forgebus status --watch`: one frame every interval until stopped. On a terminal each frame is
 * drawn over the previous one (cursor home, every line cleared to its end, the rest of the screen
 * cleared: no flicker); into a pipe or file frames follow each other (text frames separated by a
 * blank line, JSON frames one per line).
 */
export interface WatchOptions {
  intervalMs: number;
  /** Produces the next frame's text (it must not throw: a failed read is a frame saying so). */
  frame: () => Promise<string>;
  out: NodeJS.WriteStream;
  /** JSON frames: one line each, never drawn in place. */
  json: boolean;
  signal: AbortSignal;
}

const HOME = '\x1b[H';
const CLEAR_LINE_END = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';

export async function watch(options: WatchOptions): Promise<void> {
  const inPlace = options.out.isTTY === true && !options.json;
  let first = true;
  while (!options.signal.aborted) {
    const started = Date.now();
    const text = await options.frame();
    if (options.signal.aborted) break;
    if (inPlace) {
      options.out.write(`${first ? '\x1b[2J' : ''}${HOME}${text.split('\n').join(`${CLEAR_LINE_END}\n`)}${CLEAR_LINE_END}\n${CLEAR_BELOW}`);
    } else {
      options.out.write(first || options.json ? `${text}\n` : `\n${text}\n`);
    }
    first = false;
    await sleep(Math.max(0, options.intervalMs - (Date.now() - started)), options.signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

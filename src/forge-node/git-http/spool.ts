import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';

/**
 * Push requests on shared storage: the node that receives a push writes its body (ref commands
 * and pack) here, the worker that applies it, on any node, reads it, and writes git's answer
 * next to it for the receiving node to send back. `<dataDir>/spool/<id>.req` and `<id>.res`.
 */
export class PushSpool {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'spool');
  }

  newId(): string {
    return randomUUID();
  }

  request(id: string): string {
    return join(this.dir, `${safeId(id)}.req`);
  }

  response(id: string): string {
    return join(this.dir, `${safeId(id)}.res`);
  }

  /**
   * Writes the request body (gunzipped if the client compressed it) to `<id>.req`. Resolves with
   * its size, or with `tooLarge` once it passed `maxBytes` (the rest is read and dropped, so the
   * client can read the answer; the file is removed).
   */
  async receive(id: string, req: IncomingMessage, maxBytes: number): Promise<{ bytes: number; tooLarge: boolean }> {
    await mkdir(this.dir, { recursive: true });
    const file = this.request(id);
    let bytes = 0;
    let tooLarge = false;
    const limit = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        if (bytes > maxBytes) tooLarge = true;
        done(null, tooLarge ? undefined : chunk);
      },
    });
    const gzip = /^\s*(x-)?gzip\s*$/i.test(String(req.headers['content-encoding'] ?? ''));
    try {
      const out = createWriteStream(file, { mode: 0o600 });
      await (gzip ? pipeline(req, createGunzip(), limit, out) : pipeline(req, limit, out));
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    if (tooLarge) await rm(file, { force: true });
    return { bytes, tooLarge };
  }

  /** The first `bytes` of a spooled request (its ref commands). */
  async head(id: string, bytes = 64 * 1024): Promise<Buffer> {
    const handle = await open(this.request(id), 'r');
    try {
      const buffer = Buffer.alloc(bytes);
      const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async remove(id: string): Promise<void> {
    await Promise.all([rm(this.request(id), { force: true }), rm(this.response(id), { force: true }), rm(`${this.request(id)}.part`, { force: true })]);
  }

  /**
   * Removes files older than `maxAgeMs`: those of pushes whose receiving node died before it
   * could answer (and clean up), or whose write failed for good. A queued push's request is
   * younger than the queue's timeouts, so `maxAgeMs` must be well above them.
   */
  async sweep(maxAgeMs: number): Promise<number> {
    let removed = 0;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    const cutoff = Date.now() - maxAgeMs;
    for (const name of names) {
      const path = join(this.dir, name);
      try {
        if ((await stat(path)).mtimeMs < cutoff) {
          await rm(path, { force: true });
          removed++;
        }
      } catch {
        // gone already (another node swept it)
      }
    }
    return removed;
  }
}

function safeId(id: string): string {
  if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) throw new Error(`not a spool id: ${JSON.stringify(id).slice(0, 80)}`);
  return id;
}

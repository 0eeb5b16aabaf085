import { Agent, request, type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

export interface RawRequest {
  method: string;
  /** Sent as is: no URL normalisation, so "..", "%2e%2e" and bad percent-escapes reach the server. */
  path: string;
  headers?: Record<string, string>;
  /** Sent with a content-length unless a transfer-encoding header is given. */
  body?: string | Buffer;
}

/**
 * An HTTP/1.1 client for hostile-input tests: unlike fetch, it sends the path byte for byte and
 * adds no content-type. Reuses connections through its own keep-alive agent; `close()` ends them.
 * An event stream (200 text/event-stream) is closed as soon as its headers arrive.
 */
export function rawHttpClient(baseUrl: string) {
  const { hostname, port } = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const send = (req: RawRequest, timeoutMs = 15_000): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...req.headers };
      if (req.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'transfer-encoding')) {
        headers['content-length'] = Buffer.byteLength(req.body);
      }
      const outgoing = request({ host: hostname, port, method: req.method, path: req.path, headers, agent }, (res) => {
        // An event stream never ends: its status and headers are the answer.
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          res.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '' });
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      outgoing.setTimeout(timeoutMs, () => outgoing.destroy(new Error(`no answer to ${req.method} ${req.path.slice(0, 200)} within ${timeoutMs} ms`)));
      outgoing.on('error', reject);
      outgoing.end(req.body);
    });
  return { send, close: () => agent.destroy() };
}

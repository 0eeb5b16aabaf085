import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP proxy in front of a NATS server. `cut()` drops every connection through it and
 * refuses new ones until `restore()`: the client on the other side is disconnected while the
 * server (and every other client) keeps running. `downstreamDelayMs` slows everything the server
 * sends to the client (a slow link, late acks).
 */
export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private blocked = false;
  /** Milliseconds every server-to-client chunk is held back (acks, replies, messages). */
  downstreamDelayMs = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy || proxy.blocked) {
        client.destroy();
        return;
      }
      const upstream = netConnect(targetPort, '127.0.0.1');
      const pair = [client, upstream];
      for (const s of pair) {
        proxy.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          proxy!.sockets.delete(s);
          for (const other of pair) other.destroy();
        });
      }
      client.pipe(upstream);
      // Chunks are delayed by the same amount, so their order is kept.
      upstream.on('data', (chunk: Buffer) => {
        const delay = proxy!.downstreamDelayMs;
        if (delay > 0) setTimeout(() => client.destroyed || client.write(chunk), delay);
        else client.write(chunk);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('proxy has no port');
    proxy = new TcpProxy(server, address.port);
    return proxy;
  }

  cut(): void {
    this.blocked = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.blocked = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

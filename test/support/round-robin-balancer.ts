import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

export interface BalancerStats {
  /** Client connections accepted. */
  accepted: number;
  /** Client connections handed to each backend (by base URL). */
  perBackend: Record<string, number>;
  /** Backend connection attempts that failed (refused: a dead node), each followed by the next backend. */
  refused: number;
  /** Client connections that no backend took (closed at once). */
  unserved: number;
}

/**
 * A loopback TCP load balancer for tests. Each client connection goes to the next live backend in
 * round-robin order; a backend that refuses is marked down for `downMs` and the next one is tried
 * (what nginx's `max_fails=1` / haproxy's `redispatch` do), so a client never sees a dead node,
 * only a slower connect. Bytes are piped both ways untouched; when either side closes, so does
 * the other: the clients of a killed node see their streams end and reconnect, through the
 * balancer, to a live one. `close()` ends every connection and the listener.
 */
export class RoundRobinBalancer {
  readonly stats: BalancerStats = { accepted: 0, perBackend: {}, refused: 0, unserved: 0 };
  private backends: string[] = [];
  private next = 0;
  private readonly downUntil = new Map<string, number>();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly downMs: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(backends: string[], options: { downMs?: number } = {}): Promise<RoundRobinBalancer> {
    const server = createServer({ noDelay: true });
    // A reconnect storm arrives all at once: a short accept queue would drop SYNs and make
    // clients wait for a retransmit (1 s) instead of measuring the nodes.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('balancer has no port');
    const balancer = new RoundRobinBalancer(server, address.port, options.downMs ?? 1_000);
    balancer.setBackends(backends);
    server.on('connection', (client) => balancer.accept(client));
    return balancer;
  }

  /** The backends (base URLs) new connections are spread over; established ones stay where they are. */
  setBackends(urls: string[]): void {
    this.backends = [...urls];
    for (const url of urls) this.stats.perBackend[url] ??= 0;
  }

  private accept(client: Socket): void {
    this.stats.accepted++;
    this.track(client);
    // Nothing is read from the client until a backend took the connection: its request waits in
    // the socket's buffer.
    client.pause();
    this.dial(client, this.order());
  }

  /**
   * Backends to try for one connection: the live ones in round-robin order (so the share of a
   * dead one is spread over all the others, not given to its successor), then the ones marked down.
   */
  private order(): string[] {
    const now = Date.now();
    const up = this.backends.filter((b) => (this.downUntil.get(b) ?? 0) <= now);
    const down = this.backends.filter((b) => !up.includes(b));
    if (up.length === 0) return down;
    const start = this.next++ % up.length;
    return [...up.slice(start), ...up.slice(0, start), ...down];
  }

  private dial(client: Socket, candidates: string[]): void {
    if (client.destroyed) return;
    const backend = candidates[0];
    if (backend === undefined) {
      this.stats.unserved++;
      client.destroy();
      return;
    }
    const { hostname, port } = new URL(backend);
    const upstream = tcpConnect({ host: hostname, port: Number(port), noDelay: true });
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      this.downUntil.delete(backend);
      this.stats.perBackend[backend] = (this.stats.perBackend[backend] ?? 0) + 1;
      this.track(upstream);
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) a.once('close', () => b.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.once('error', () => {
      if (connected) return; // 'close' follows and takes the client down with it
      this.stats.refused++;
      this.downUntil.set(backend, Date.now() + this.downMs);
      upstream.destroy();
      this.dial(client, candidates.slice(1));
    });
    // A client that gives up while its backend is being dialled takes the attempt with it.
    const abandon = () => connected || upstream.destroy();
    client.once('close', abandon);
    upstream.once('connect', () => client.removeListener('close', abandon));
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Open connections (client and backend sides). */
  get connections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

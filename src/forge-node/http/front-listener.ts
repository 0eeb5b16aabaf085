import type { IncomingMessage, Server, ServerResponse } from 'node:http';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** A route served by a plain node:http listener instead of the application behind it. */
export interface FrontRoute {
  /** Runs for every request the server gets: keep it to a few string comparisons. */
  matches(req: IncomingMessage): boolean;
  /** Answers the request, errors included: it must not throw. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

/**
 * Puts `routes` ahead of the server's request listener (the Nest/Express application, which
 * `http.createServer(expressApp)` registered): requests it matches never enter Express, every
 * other request goes to the application as before. It stays one server, so Nest's connection
 * tracking (forceCloseConnections), keep-alive and shutdown cover both.
 */
export function placeInFront(server: Server, ...routes: FrontRoute[]): void {
  const listeners = server.listeners('request') as RequestListener[];
  // Anything else means the adapter changed how it serves requests: better to refuse to start
  // than to put the route in front of only part of the application.
  if (listeners.length !== 1) throw new Error(`expected the application to be the HTTP server's only request listener, found ${listeners.length}`);
  const application = listeners[0]!;
  server.removeListener('request', application);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    for (const route of routes) {
      if (route.matches(req)) return route.handle(req, res);
    }
    application(req, res);
  });
}

import { ensureNatsServer } from './nats-server.js';

// `npm run nats:ensure`: used by .ci/run, prints where nats-server is (installing it if needed).
try {
  const path = ensureNatsServer();
  console.log(`nats-server: ${path}`);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}

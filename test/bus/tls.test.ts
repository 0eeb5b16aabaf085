import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus, ForgeBus, ForgeBusConfigError, InvalidOptionError, silentLogger, type BusConnectionOptions } from '../../src/bus/index.js';
import { startNatsServer, type RunningNatsServer } from '../../src/ops/nats-server.js';

/**
 * TLS between forge nodes and NATS: a private CA made with the openssl command line, a real
 * nats-server that requires TLS and verifies client certificates, loopback only.
 */

function openssl(cwd: string, args: string[]): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.error) throw new Error(`cannot run openssl (${result.error.message}): install it (apt-get install openssl)`);
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
}

interface Pki {
  ca: string;
  /** Certificate for IP:127.0.0.1, the address the servers listen on. */
  server: { cert: string; key: string };
  /** Certificate for IP:127.0.0.2 only: valid CA, wrong address. */
  otherServer: { cert: string; key: string };
  client: { cert: string; key: string };
}

/** A CA and three certificates it signed (EC P-256 keys: quick to make). */
function makePki(dir: string): Pki {
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...newKey, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=forgebus test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 1;
  const leaf = (name: string, cn: string, extensions: string[]) => {
    writeFileSync(join(dir, `${name}.ext`), `${extensions.join('\n')}\n`);
    openssl(dir, ['req', ...newKey, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', String(serial++),
      '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
  };
  return {
    ca: join(dir, 'ca.pem'),
    server: leaf('server', '127.0.0.1', ['subjectAltName=IP:127.0.0.1', 'extendedKeyUsage=serverAuth']),
    otherServer: leaf('other-server', '127.0.0.2', ['subjectAltName=IP:127.0.0.2', 'extendedKeyUsage=serverAuth']),
    client: leaf('client', 'forge-node-1', ['extendedKeyUsage=clientAuth']),
  };
}

interface TlsServer {
  server: RunningNatsServer;
  /** Every line the server logged. */
  log: string[];
}

/** nats-server with the `tls {}` block of docs/nats-tls.md: TLS required, client certificates verified. */
async function startTlsServer(dir: string, name: string, cert: { cert: string; key: string }, ca: string): Promise<TlsServer> {
  const configFile = join(dir, `${name}.conf`);
  writeFileSync(
    configFile,
    ['tls {', `  cert_file: "${cert.cert}"`, `  key_file: "${cert.key}"`, `  ca_file: "${ca}"`, '  verify: true', '  timeout: 2', '}', ''].join('\n'),
  );
  const log: string[] = [];
  // Listen address, port (free), JetStream and storage come from startNatsServer's flags; TLS from the file.
  const server = await startNatsServer({ storeDir: join(dir, `${name}-store`), monitorPort: -1, args: ['-c', configFile], onLog: (line) => log.push(line) });
  assert.ok(log.some((l) => l.includes('TLS required for client connections')), 'the server requires TLS');
  return { server, log };
}

type Outcome = { nc: NatsConnection; error?: undefined } | { nc?: undefined; error: Error & { code?: string } };

/** Where a connection attempt ends, bounded so a hanging attempt fails the test instead of hanging it. */
async function settle(attempt: Promise<NatsConnection>, withinMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`TEST DEADLINE: the connection attempt neither succeeded nor failed within ${withinMs} ms`)), withinMs);
  });
  try {
    return { nc: await Promise.race([attempt, deadline]) };
  } catch (error) {
    assert.doesNotMatch((error as Error).message, /^TEST DEADLINE/);
    return { error: error as Error & { code?: string } };
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that the attempt failed (closing the connection if it did not) and returns its error. */
async function refused(attempt: Promise<NatsConnection>, withinMs: number): Promise<Error & { code?: string }> {
  const outcome = await settle(attempt, withinMs);
  if (outcome.nc) {
    await outcome.nc.close();
    assert.fail('the connection was accepted');
  }
  return outcome.error;
}

/** The ForgeBusConfigError that `make` throws, before any connection is tried. */
async function configError(make: () => Promise<unknown>): Promise<ForgeBusConfigError> {
  const started = Date.now();
  try {
    const made = await make();
    if (made && typeof (made as NatsConnection).close === 'function') await (made as NatsConnection).close();
  } catch (err) {
    assert.ok(err instanceof ForgeBusConfigError, `expected a ForgeBusConfigError, got ${String(err)}`);
    assert.ok(Date.now() - started < 1_000, 'refused at once, not after connection attempts');
    assert.doesNotMatch(err.message, /\n\s+at /, 'no stack trace in the message');
    return err;
  }
  assert.fail('the options were accepted');
}

// Node's codes for a server certificate that does not chain to a trusted CA.
const UNTRUSTED_CERT_CODES = ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT'];

describe('TLS to NATS (CA, client certificates)', () => {
  let dir: string;
  let pki: Pki;
  let nats: TlsServer;
  const servers: RunningNatsServer[] = [];
  const open: NatsConnection[] = [];

  const conn = (tls?: BusConnectionOptions['tls'], name = 'tls-test'): BusConnectionOptions => ({
    name,
    servers: nats.server.url,
    waitOnFirstConnect: false,
    ...(tls && { tls }),
  });
  const fullTls = () => ({ caFile: pki.ca, certFile: pki.client.cert, keyFile: pki.client.key });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'forgebus-tls-'));
    pki = makePki(dir);
    nats = await startTlsServer(dir, 'nats', pki.server, pki.ca);
    servers.push(nats.server);
    assert.match(nats.server.url, /^nats:\/\/127\.0\.0\.1:\d+$/, 'loopback, by IP address');
  });

  after(async () => {
    await Promise.all(open.map((nc) => nc.close().catch(() => undefined)));
    await Promise.all(servers.map((s) => s.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('(a) refuses a connection without TLS options; the server refuses plain text', async () => {
    // nats.js upgrades to TLS by itself when the server requires it, then cannot trust the private CA.
    const err = await refused(connectBus(conn(), silentLogger), 10_000);
    assert.ok(UNTRUSTED_CERT_CODES.includes(err.code ?? ''), `refused for the untrusted certificate, got ${err.code}: ${err.message}`);

    // A client that really speaks plain text: the server announces TLS and drops it, no PONG.
    const reply = await new Promise<{ info: Record<string, unknown>; after: string }>((resolve, reject) => {
      const socket = tcpConnect(nats.server.port, '127.0.0.1');
      socket.setEncoding('utf8');
      let received = '';
      let info: Record<string, unknown> | undefined;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`the server kept the plain-text connection open; received ${JSON.stringify(received)}`));
      }, 5_000);
      socket.on('data', (chunk: string) => {
        received += chunk;
        if (!info && received.includes('\r\n')) {
          const line = received.slice(0, received.indexOf('\r\n'));
          info = JSON.parse(line.replace(/^INFO /, '')) as Record<string, unknown>;
          received = received.slice(line.length + 2);
          socket.write('CONNECT {"verbose":false,"pedantic":false,"name":"plain"}\r\nPING\r\n');
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        clearTimeout(timer);
        if (info) resolve({ info, after: received });
        else reject(new Error('closed before INFO'));
      });
    });
    assert.equal(reply.info.tls_required, true);
    assert.doesNotMatch(reply.after, /PONG/);
    assert.ok(nats.log.some((l) => l.includes('first record does not look like a TLS handshake')), 'the server logged the plain-text attempt');
  });

  it('(b) connects with the CA and a client certificate, and carries messages', async () => {
    const outcome = await settle(connectBus(conn(fullTls(), 'tls-test:client-cert'), silentLogger), 10_000);
    assert.ok(outcome.nc, `connected: ${outcome.error?.code ?? ''} ${outcome.error?.message ?? ''}`);
    const nc = outcome.nc;
    open.push(nc);
    assert.equal(nc.info?.tls_required, true);
    assert.equal(nc.info?.tls_verify, true);

    const sub = nc.subscribe('forge.tls.test', { max: 1 });
    const received = (async () => {
      for await (const m of sub) return m.string();
      return undefined;
    })();
    await nc.flush();
    nc.publish('forge.tls.test', 'over tls');
    const timer = setTimeout(() => sub.unsubscribe(), 5_000);
    assert.equal(await received, 'over tls');
    clearTimeout(timer);
    await nc.close();

    // The same settings through the facade (option rules, stream provisioning over TLS).
    const bus = await ForgeBus.connect({ nodeId: 'tls-1', connection: { servers: nats.server.url, tls: fullTls() }, logger: silentLogger });
    await bus.close();
  });

  it('(c) is refused by the verifying server without a client certificate', async () => {
    const before = nats.log.length;
    // The TLS 1.3 handshake completes on the client side before the server checks the client's
    // certificate; nats.js then sees the connection drop and gives up after its connect timeout
    // (20 s), with "timeout" as its only reason. The server says why.
    const err = await refused(connectBus(conn({ caFile: pki.ca }, 'tls-test:no-client-cert'), silentLogger), 30_000);
    assert.ok(!(err instanceof ForgeBusConfigError), `a connection failure, not a configuration error: ${err.message}`);
    assert.ok(
      nats.log.slice(before).some((l) => /TLS handshake error: .*didn't provide a certificate/.test(l)),
      `the server refused the client for its missing certificate; server said: ${nats.log.slice(before).join(' | ')}`,
    );
  });

  it('(d) refuses unusable TLS settings at once, naming the option', async () => {
    const certOnly = await configError(() => connectBus(conn({ caFile: pki.ca, certFile: pki.client.cert }), silentLogger));
    assert.match(certOnly.message, /tls\.certFile is given without tls\.keyFile/);
    assert.match(certOnly.message, /give both/);

    const keyOnly = await configError(() => connectBus(conn({ keyFile: pki.client.key }), silentLogger));
    assert.match(keyOnly.message, /tls\.keyFile is given without tls\.certFile/);

    const missing = join(dir, 'no-such-ca.pem');
    const missingCa = await configError(() => connectBus(conn({ caFile: missing }), silentLogger));
    assert.ok(missingCa.message.includes(`tls.caFile "${missing}"`), missingCa.message);
    assert.match(missingCa.message, /no such file or directory/);
    assert.match(missingCa.message, /give the path of a PEM file this process may read \(for a forge node: NATS_TLS_CA\)/);

    const aDirectory = join(dir, 'a-directory');
    mkdirSync(aDirectory);
    const dirKey = await configError(() => connectBus(conn({ certFile: pki.client.cert, keyFile: aDirectory }), silentLogger));
    assert.match(dirKey.message, /tls\.keyFile ".*a-directory" \(EISDIR/);

    const empty = join(dir, 'empty.pem');
    writeFileSync(empty, '');
    assert.match((await configError(() => connectBus(conn({ caFile: empty }), silentLogger))).message, /tls\.caFile ".*empty\.pem" is empty/);

    // Through the facade: the same checks, and the option rules for the tls object.
    const viaBus = await configError(() => ForgeBus.connect({ nodeId: 'tls-2', connection: { servers: nats.server.url, tls: { certFile: pki.client.cert } }, logger: silentLogger }));
    assert.match(viaBus.message, /tls\.certFile is given without tls\.keyFile/);
    const wrongKind = await configError(() => ForgeBus.connect({ nodeId: 'tls-2', connection: { tls: { caFile: 42 as unknown as string } }, logger: silentLogger }));
    assert.ok(wrongKind instanceof InvalidOptionError);
    assert.equal(wrongKind.option, 'connection.tls.caFile');
    const misspelt = await configError(() => ForgeBus.connect({ nodeId: 'tls-2', connection: { tls: { cafile: pki.ca } as never }, logger: silentLogger }));
    assert.ok(misspelt instanceof InvalidOptionError);
    assert.equal(misspelt.code, 'UNKNOWN_OPTION');
    assert.equal(misspelt.option, 'connection.tls.cafile');
  });

  it('(e) refuses a server whose certificate, from the same CA, is for another address', async () => {
    const other = await startTlsServer(dir, 'other', pki.otherServer, pki.ca);
    servers.push(other.server);
    const err = await refused(connectBus({ ...conn(fullTls()), servers: other.server.url }, silentLogger), 10_000);
    assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID', err.message);
    await other.server.stop();
  });
});

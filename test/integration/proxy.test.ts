import { execFile, spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_IDS, loadCatalog } from '../../src/catalog/index.js';
import { loadConfigChecked, type ProxyConfig } from '../../src/config/index.js';
import { createAddressResolver, type AddressResolver } from '../../src/dns/index.js';
import { AnswerCache } from '../../src/dns/cache.js';
import { UpstreamPool } from '../../src/dns/upstream.js';
import { createLogger } from '../../src/observability/logger.js';
import { PolicyEngine, type Decision } from '../../src/policy/index.js';
import { ProxyServer, type ProxyListener, type ProxyResult } from '../../src/proxy/index.js';
import { helloCorpus, mutate, prng, records, serverName, simpleHello, splitAt, handshake, helloBody, commonExtensions } from '../support/client-hello.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';

// Loopback only: every listener binds 127.0.0.1, every name the proxy dials is pinned to
// 127.0.0.1 (proxy.hosts) or resolved by a fake DNS upstream on 127.0.0.1.

const ALLOWED = 'allowed.test';
const KAKAO = 'talk-pilsner.kakao.com';
const LINE = 'legy-jp.line-apps.com';
const HOSTS: Record<string, string> = {
  [ALLOWED]: '127.0.0.1',
  'public.allowed.test': '127.0.0.1',
  // Blocked names are pinned to the backend too: if the policy let one through, the backend would see it.
  [KAKAO]: '127.0.0.1',
  [LINE]: '127.0.0.1',
};
/** How Node names a handshake_failure alert received: OpenSSL 3.0 (Node 20, 22) and 3.5 (Node 24) spell it differently. */
const HANDSHAKE_FAILURE_CODE = expect.stringMatching(/^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/) as unknown as string;
/** handshake_failure (40), fatal. */
const ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

// ---- backends ------------------------------------------------------------------------------

interface RelayConnection {
  received: Buffer[];
  bytes(): Buffer;
  closed: Promise<void>;
}

interface Relay {
  port: number;
  connections: RelayConnection[];
  close(): Promise<void>;
}

/**
 * A TCP relay in front of the TLS backend that records every byte the proxy sends upstream (the
 * byte-identical check) and counts connections (the "backend sees no connection" check).
 * With `target` null it is a sink that reads and closes at the peer's end.
 */
async function startRelay(target: number | null): Promise<Relay> {
  const sockets = new Set<Socket>();
  const connections: RelayConnection[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    const received: Buffer[] = [];
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const upstream = target === null ? null : connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
    const closed = Promise.all([
      new Promise<void>((resolve) => socket.once('close', () => resolve())),
      upstream === null ? Promise.resolve() : new Promise<void>((resolve) => upstream.once('close', () => resolve())),
    ]).then(() => {
      sockets.delete(socket);
    });
    connections.push({ received, bytes: () => Buffer.concat(received), closed });
    if (upstream === null) {
      socket.on('end', () => socket.end());
      return;
    }
    sockets.add(upstream);
    upstream.on('error', () => {
      upstream.destroy();
      socket.destroy();
    });
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream);
    upstream.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface HttpSeen {
  method: string;
  url: string;
  host: string | undefined;
  hostCount: number;
  transferEncoding: string | undefined;
  length: number;
  sha256: string;
}

// ---- clients -------------------------------------------------------------------------------

/** A raw TCP client: what it received, the error it saw, when it closed. */
class RawConn {
  received = Buffer.alloc(0);
  error: string | null = null;
  isClosed = false;
  closedAt = 0;
  readonly openedAt = Date.now();
  readonly closed: Promise<void>;
  private readonly socket: Socket;
  private readonly waiters = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error ??= e.code ?? e.message;
    });
    // As ordinary clients do: when the peer is done, so are we.
    socket.on('end', () => socket.end());
    this.closed = new Promise<void>((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        this.closedAt = Date.now();
        this.wake();
        resolve();
      });
    });
  }

  static open(port: number, options: { localAddress?: string } = {}): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true, localAddress: options.localAddress });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawConn(socket));
      });
      socket.once('error', reject);
    });
  }

  get socketForTls(): Socket {
    return this.socket;
  }

  async write(data: Buffer | string): Promise<void> {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    await new Promise<void>((resolve) => {
      this.socket.write(data, () => resolve());
    });
  }

  /** Writes each segment on its own, yielding to the event loop in between. */
  async writeSegments(segments: readonly Buffer[], gapMs = 0): Promise<void> {
    for (const segment of segments) {
      await this.write(segment);
      if (gapMs > 0) await sleep(gapMs);
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Aborts with a TCP RST, as a client that crashed or lost its network. */
  reset(): void {
    this.socket.resetAndDestroy();
  }

  /** Resolves once `predicate` holds (checked at every arrival and at close); rejects after `timeoutMs`. */
  until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`condition not met within ${timeoutMs} ms; received ${JSON.stringify(this.received.toString('latin1').slice(0, 300))}, closed ${this.isClosed}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  untilClosed(timeoutMs = 5_000): Promise<void> {
    return this.until(() => this.isClosed, timeoutMs);
  }

  responses(): HttpResponse[] {
    return parseResponses(this.received);
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Complete HTTP/1.1 responses with a content-length at the start of `buf`. */
function parseResponses(buf: Buffer): HttpResponse[] {
  const out: HttpResponse[] = [];
  let pos = 0;
  for (;;) {
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) return out;
    const lines = buf.subarray(pos, headEnd).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    if (buf.length < headEnd + 4 + length) return out;
    out.push({ status, headers, body: buf.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8') });
    pos = headEnd + 4 + length;
  }
}

/** GET / over TLS through the proxy; resolves with the response text, rejects with the TLS error. */
function tlsGet(port: number, servername: string, options: { socket?: Socket; isKeepAlive?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket =
      options.socket === undefined
        ? tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false })
        : tlsConnect({ socket: options.socket, servername, rejectUnauthorized: false });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      // Keep-alive: the client closes first, once the response is in (close_notify, then FIN).
      if (options.isKeepAlive === true && parseResponses(Buffer.from(text)).length === 1) socket.end();
    });
    socket.once('secureConnect', () => {
      socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\n${options.isKeepAlive === true ? '' : 'Connection: close\r\n'}\r\n`);
    });
    socket.on('error', reject);
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      resolve(text);
    });
  });
}

function run(command: string, args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { timeout: 15_000, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---- the proxy under test ------------------------------------------------------------------

type LogLine = Record<string, unknown> & { level: number; msg: string };

interface RunningProxy {
  server: ProxyServer;
  tls: number;
  http: number;
  address: string;
  results: { listener: ProxyListener; result: ProxyResult; decision: Decision | null }[];
  logs: LogLine[];
}

let dir = '';
let backend: Relay;
let https: HttpsServer;
let httpBackend: HttpServer;
let httpPort = 0;
const httpSeen: HttpSeen[] = [];
let dns: FakeUpstream;
let pool: UpstreamPool;
let resolver: AddressResolver;
let engine: PolicyEngine;
const proxies: ProxyServer[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

async function startProxy(overrides: Record<string, string> = {}, level = 'info', resolveWith: AddressResolver = resolver): Promise<RunningProxy> {
  const { config, problems } = await loadConfigChecked({
    env: {},
    cwd: dir,
    overrides: {
      'proxy.tls.upstreamPort': String(backend.port),
      'proxy.http.upstreamPort': String(httpPort),
      'proxy.hosts': JSON.stringify(HOSTS),
      'proxy.allowedUpstreamNetworks': '["127.0.0.0/8"]',
      ...overrides,
    },
  });
  expect(problems).toEqual([]);
  const proxyConfig: ProxyConfig = { ...config!.proxy, tls: { ...config!.proxy.tls, listen: '127.0.0.1:0' }, http: { ...config!.proxy.http, listen: '127.0.0.1:0' } };
  const logs: LogLine[] = [];
  const logger = createLogger({
    level,
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine);
        callback();
      },
    }),
  });
  const results: RunningProxy['results'] = [];
  const server = new ProxyServer({
    config: proxyConfig,
    policy: engine,
    resolver: resolveWith,
    logger,
    onResult: (listener, result, decision) => results.push({ listener, result, decision }),
  });
  proxies.push(server);
  const addresses = await server.listen();
  return { server, tls: addresses.tls.port, http: addresses.http.port, address: addresses.tls.address, results, logs };
}

/** Log lines at error level or above: any is a bug (a handler that threw). */
function errorsIn(proxy: RunningProxy): LogLine[] {
  return proxy.logs.filter((l) => l.level >= 50);
}

let main: RunningProxy;

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  process.on('uncaughtExceptionMonitor', onUnhandled);
  dir = await mkdtemp(join(tmpdir(), 'portcullis-proxy-'));
  const made = await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-subj', '/CN=localhost', '-addext', `subjectAltName=DNS:localhost,DNS:${ALLOWED},DNS:${KAKAO}`, '-days', '1',
  ]);
  expect(made.code, made.stderr).toBe(0);
  const [key, cert] = await Promise.all([readFile(join(dir, 'key.pem')), readFile(join(dir, 'cert.pem'))]);
  https = createHttpsServer({ key, cert }, (req, res) => {
    req.resume();
    const servername = req.socket instanceof TLSSocket ? req.socket.servername : null;
    const body = `tls backend: host=${req.headers.host ?? ''} sni=${typeof servername === 'string' && servername !== '' ? servername : '-'}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  backend = await startRelay((https.address() as AddressInfo).port);

  httpBackend = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const seen: HttpSeen = {
        method: req.method ?? '',
        url: req.url ?? '',
        host: req.headers.host,
        hostCount: req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length,
        transferEncoding: req.headers['transfer-encoding'],
        length: body.length,
        sha256: sha256(body),
      };
      httpSeen.push(seen);
      const text = JSON.stringify(seen);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => httpBackend.listen(0, '127.0.0.1', resolve));
  httpPort = (httpBackend.address() as AddressInfo).port;

  dns = await startFakeUpstream({
    'resolved.test': [{ type: 'A', value: '127.0.0.1' }],
    'ssrf-loop.test': [{ type: 'A', value: '127.0.0.1' }],
    'metadata.test': [{ type: 'A', value: '169.254.169.254' }],
    'innocent.test': [{ type: 'A', value: '147.92.150.1' }],
  });
  pool = new UpstreamPool([dns.target], { logger: createLogger({ level: 'silent' }) });
  resolver = createAddressResolver(pool, new AnswerCache());
  engine = new PolicyEngine({ catalog: await loadCatalog(), apps: { enabled: new Set(APP_IDS), extended: new Set() } });
  main = await startProxy();
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close(100)));
  await backend.close();
  https.closeAllConnections();
  httpBackend.closeAllConnections();
  await Promise.all([new Promise((resolve) => https.close(resolve)), new Promise((resolve) => httpBackend.close(resolve))]);
  await pool.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
  process.off('unhandledRejection', onUnhandled);
  process.off('uncaughtExceptionMonitor', onUnhandled);
  expect(unhandled).toEqual([]);
  expect(errorsIn(main)).toEqual([]);
});

/** The connections the backend accepted after `before`, once they are closed. */
async function newBackendConnections(before: number): Promise<RelayConnection[]> {
  const fresh = backend.connections.slice(before);
  await Promise.all(fresh.map((c) => c.closed));
  return fresh;
}

// ---- TLS -----------------------------------------------------------------------------------

describe('TLS proxy: real clients', () => {
  it('binds only the configured host when the listen port is 0', () => {
    expect(main.address).toBe('127.0.0.1');
  });

  it('node:tls to an allowed name reaches the backend, and the backend gets the client bytes unchanged', async () => {
    // The client talks to a recording relay in front of the proxy: what it sent is compared
    // with what arrived at the backend.
    const front = await startRelay(main.tls);
    try {
      const before = backend.connections.length;
      const text = await tlsGet(front.port, ALLOWED, { isKeepAlive: true });
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(text).toContain(`tls backend: host=${ALLOWED} sni=${ALLOWED}`);
      await front.connections[0]!.closed;
      const [arrived] = await newBackendConnections(before);
      const sent = front.connections[0]!.bytes();
      expect(readHelloLength(sent)).toBeGreaterThan(0);
      expect(arrived!.bytes().toString('hex')).toBe(sent.toString('hex'));
    } finally {
      await front.close();
    }
    expect(main.results.at(-1)).toMatchObject({ listener: 'tls', result: 'forwarded' });
  });

  it('curl --resolve allowed.test:PORT:127.0.0.1 reaches the backend', async () => {
    const result = await run('curl', ['-sS', '-k', '--max-time', '5', '--resolve', `${ALLOWED}:${main.tls}:127.0.0.1`, `https://${ALLOWED}:${main.tls}/`]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`tls backend: host=${ALLOWED}:${main.tls} sni=${ALLOWED}\n`);
  });

  it('openssl s_client -servername allowed.test completes the handshake', async () => {
    const result = await run('openssl', ['s_client', '-connect', `127.0.0.1:${main.tls}`, '-servername', ALLOWED, '-brief']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/CONNECTION ESTABLISHED/);
  });

  it.each([KAKAO, LINE])('%s is refused with a handshake_failure alert and the backend sees no connection', async (name) => {
    const before = backend.connections.length;
    const error = await tlsGet(main.tls, name).then(
      () => null,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(error?.code).toEqual(HANDSHAKE_FAILURE_CODE);
    expect(error?.message).toMatch(/alert number 40|handshake failure/);
    expect(backend.connections.length).toBe(before);
    const app = name === KAKAO ? 'kakaotalk' : 'line';
    expect(main.results.at(-1)).toMatchObject({ listener: 'tls', result: 'blocked', decision: { app, layer: 'tls' } });
    expect(main.logs.at(-1)).toMatchObject({ msg: 'blocked', app, layer: 'tls', name });
  });

  it('curl to talk-pilsner.kakao.com fails at the handshake; openssl s_client reports alert 40', async () => {
    const before = backend.connections.length;
    const curl = await run('curl', ['-sS', '-k', '--max-time', '5', '--resolve', `${KAKAO}:${main.tls}:127.0.0.1`, `https://${KAKAO}:${main.tls}/`]);
    expect(curl.code).toBe(35);
    expect(curl.stderr).toMatch(/handshake failure/);
    const openssl = await run('openssl', ['s_client', '-connect', `127.0.0.1:${main.tls}`, '-servername', KAKAO, '-brief']);
    expect(openssl.code).not.toBe(0);
    expect(openssl.stderr).toMatch(/alert number 40/);
    expect(backend.connections.length).toBe(before);
  });

  it('with blockAction rst the client sees ECONNRESET', async () => {
    const rst = await startProxy({ 'proxy.blockAction': 'rst' });
    const before = backend.connections.length;
    await expect(tlsGet(rst.tls, KAKAO)).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(backend.connections.length).toBe(before);
    // Allowed names still pass on that proxy.
    expect(await tlsGet(rst.tls, ALLOWED)).toMatch(/^HTTP\/1\.1 200/);
    await rst.server.close(100);
  });

  it('a hello without SNI is refused: explicit mode has no destination', async () => {
    const before = backend.connections.length;
    const conn = await RawConn.open(main.tls);
    await conn.write(records(handshake(helloBody({ extensions: commonExtensions() }))));
    conn.end();
    await conn.untilClosed();
    expect(conn.received.equals(ALERT)).toBe(true);
    // node:tls by IP address sends no SNI either.
    await expect(tlsGet(main.tls, '')).rejects.toMatchObject({ code: HANDSHAKE_FAILURE_CODE });
    expect(backend.connections.length).toBe(before);
    expect(main.results.at(-1)).toMatchObject({ listener: 'tls', result: 'no-sni' });
  });
});

function readHelloLength(bytes: Buffer): number {
  return bytes.length >= 5 && bytes[0] === 0x16 ? bytes.readUInt16BE(3) : 0;
}

describe('TLS proxy: hand-built hellos, split every way', () => {
  const corpus = helloCorpus();
  const isAllowed = (sni: string): boolean => sni === ALLOWED || sni === 'public.allowed.test';

  /** Sends `segments`, half-closes, waits for the proxy to close; returns what the backend got. */
  async function through(segments: Buffer[]): Promise<{ conn: RawConn; upstream: RelayConnection[] }> {
    const before = backend.connections.length;
    const conn = await RawConn.open(main.tls);
    await conn.writeSegments(segments);
    conn.end();
    await conn.untilClosed();
    return { conn, upstream: await newBackendConnections(before) };
  }

  it.each(corpus.map((c) => [c.name, c] as const))('%s, in 1-byte segments', async (_name, c) => {
    const { conn, upstream } = await through(splitAt(c.bytes, Array.from({ length: c.bytes.length - 1 }, (_, i) => i + 1)));
    if (c.expected.kind === 'found' && isAllowed(c.expected.sni)) {
      expect(upstream).toHaveLength(1);
      expect(upstream[0]!.bytes().equals(c.bytes)).toBe(true);
    } else {
      expect(upstream).toHaveLength(0);
      expect(conn.received.equals(ALERT)).toBe(true);
    }
  });

  it('split inside the SNI, across two TCP segments, at every byte of the name', async () => {
    for (const name of [ALLOWED, KAKAO]) {
      const bytes = simpleHello(name);
      const at = bytes.indexOf(name);
      for (let cut = at; cut <= at + name.length; cut++) {
        const { conn, upstream } = await through(splitAt(bytes, [cut]));
        if (name === ALLOWED) expect(upstream.map((u) => u.bytes().equals(bytes)), `cut ${cut}`).toEqual([true]);
        else {
          expect(upstream, `cut ${cut}`).toHaveLength(0);
          expect(conn.received.equals(ALERT)).toBe(true);
        }
      }
    }
  });

  it('an allowed hello followed at once by more records: all of it arrives, in order', async () => {
    const hello = simpleHello(ALLOWED);
    const more = Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00, 0x03, 1, 2, 3]);
    const { upstream } = await through([Buffer.concat([hello, more])]);
    expect(upstream).toHaveLength(1);
    expect(upstream[0]!.bytes().equals(Buffer.concat([hello, more]))).toBe(true);
  });

  it('a name resolved through DNS (not proxy.hosts) inside allowedUpstreamNetworks reaches the backend', async () => {
    const bytes = simpleHello('resolved.test');
    const { upstream } = await through([bytes]);
    expect(upstream.map((u) => u.bytes().equals(bytes))).toEqual([true]);
  });

  it('10,000 mutated hellos, each on its own connection: no crash, no unhandled error, an allowed connection works after', async () => {
    const fuzz = await startProxy({}, 'warn');
    const seeds = corpus.map((c) => c.bytes).filter((b) => b.length < 3_000);
    const random = prng(20_240_601);
    const total = 10_000;
    const parallel = 64;
    let next = 0;
    let closedByProxy = 0;
    const started = Date.now();
    const worker = async (): Promise<void> => {
      while (next < total) {
        next++;
        const bytes = mutate(seeds[Math.floor(random() * seeds.length)]!, random);
        const conn = await RawConn.open(fuzz.tls);
        await conn.write(bytes);
        conn.end();
        await conn.untilClosed(10_000);
        closedByProxy++;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    expect(closedByProxy).toBe(total);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await tlsGet(fuzz.tls, ALLOWED)).toMatch(/^HTTP\/1\.1 200/);
    await expect(tlsGet(fuzz.tls, KAKAO)).rejects.toMatchObject({ code: HANDSHAKE_FAILURE_CODE });
    expect(errorsIn(fuzz)).toEqual([]);
    expect(unhandled).toEqual([]);
    // The mutations were not all refused the same way: some forwarded, some blocked, many invalid.
    const kinds = new Set(fuzz.results.map((r) => r.result));
    expect(kinds).toContain('forwarded');
    expect(kinds).toContain('blocked');
    expect(kinds).toContain('invalid');
    await fuzz.server.close(100);
  }, 40_000);
});

describe('TLS proxy: server-to-client bytes', () => {
  /** A raw backend: after the hello and one seed byte it sends `size` bytes derived from the seed, then ends. */
  async function startDownloadBackend(size: number): Promise<{ port: number; close: () => Promise<void> }> {
    const server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      // The seed is the byte right after the hello; the proxy may pass them on in separate writes.
      const seedAt = simpleHello(ALLOWED).length;
      let received = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        received = Buffer.concat([received, chunk]);
        if (received.length <= seedAt) return;
        socket.off('data', onData);
        const seed = received[seedAt]!;
        const body = randomBytesFrom(seed, size);
        let offset = 0;
        // Uneven write sizes, so reads on the proxy side come in every size.
        const pump = (): void => {
          while (offset < body.length) {
            const n = 1 + ((offset * 7919) % 300_000);
            const ok = socket.write(body.subarray(offset, offset + n));
            offset += n;
            if (!ok) return void socket.once('drain', pump);
          }
          socket.end();
        };
        pump();
      };
      socket.on('data', onData);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { port: (server.address() as AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  /** Pseudo-random bytes from a seed (AES-CTR keystream): fast enough for tens of MiB. */
  function randomBytesFrom(seed: number, size: number): Buffer {
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
    return cipher.update(Buffer.alloc(size));
  }

  it('concurrent downloads, fast and slow clients, each get exactly their own bytes', async () => {
    // Bigger than the kernel's socket buffers can hold for a client that reads nothing.
    const size = 32 * 1024 * 1024;
    const download = await startDownloadBackend(size);
    const proxy = await startProxy({ 'proxy.tls.upstreamPort': String(download.port) });
    try {
      const clients = Array.from({ length: 4 }, (_, i) => i);
      // Slow clients read nothing until the fast ones are done: meanwhile the proxy holds writes
      // the kernel cannot take for them, while the fast connections keep reading.
      let fastDone = (): void => undefined;
      const untilFastDone = new Promise<void>((resolve) => (fastDone = resolve));
      const downloads = clients.map(
        (i) =>
          new Promise<Buffer>((resolve, reject) => {
            const chunks: Buffer[] = [];
            const socket = connect({ host: '127.0.0.1', port: proxy.tls }, () => socket.write(Buffer.concat([simpleHello(ALLOWED), Buffer.from([i])])));
            if (i % 2 === 1) {
              socket.pause();
              void untilFastDone.then(() => socket.resume());
            }
            socket.on('data', (chunk: Buffer) => chunks.push(chunk));
            socket.on('end', () => resolve(Buffer.concat(chunks)));
            socket.on('error', reject);
          }),
      );
      await Promise.all(downloads.filter((_, i) => i % 2 === 0));
      fastDone();
      const got = await Promise.all(downloads);
      for (const i of clients) {
        expect(got[i]!.length, `client ${i}`).toBe(size);
        expect(sha256(got[i]!), `client ${i}`).toBe(sha256(randomBytesFrom(i, size)));
      }
    } finally {
      await proxy.server.close(100);
      await download.close();
    }
    expect(errorsIn(proxy)).toEqual([]);
  });
});

describe('TLS proxy: a slow client and a server that trickles', () => {
  it('small writes queued behind a full socket buffer still reach the client: no stall at the end of a download', async () => {
    const bulk = 16 * 1024 * 1024;
    const trickles = 300;
    const size = bulk + trickles * 1000;
    const body = randomBytes(size);
    const server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.once('data', () => {
        socket.write(body.subarray(0, bulk));
        // Then small pieces, each its own read on the proxy side (the read buffer shrinks to
        // its minimum), while the client's socket buffers are still full.
        let i = 0;
        const tick = (): void => {
          if (i === trickles) return void socket.end();
          socket.write(body.subarray(bulk + i * 1000, bulk + (i + 1) * 1000));
          i++;
          setTimeout(tick, 1);
        };
        tick();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = await startProxy({ 'proxy.tls.upstreamPort': String((server.address() as AddressInfo).port) });
    try {
      const got = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const socket = connect({ host: '127.0.0.1', port: proxy.tls }, () => socket.write(simpleHello(ALLOWED)));
        socket.pause();
        setTimeout(() => socket.resume(), 800);
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.on('end', () => resolve(Buffer.concat(chunks)));
        socket.on('error', reject);
        setTimeout(() => reject(new Error(`stalled at ${chunks.reduce((n, c) => n + c.length, 0)} of ${size} bytes`)), 15_000).unref();
      });
      expect(got.length).toBe(size);
      expect(got.equals(body)).toBe(true);
    } finally {
      await proxy.server.close(100);
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('TLS proxy: SSRF and address rules', () => {
  it.each([
    ['ssrf-loop.test', /loopback/],
    ['metadata.test', /169\.254/],
  ])('%s resolves (via DNS) to a forbidden address: refused before dialling, the loopback backend sees nothing', async (name, reason) => {
    const guarded = await startProxy({ 'proxy.allowedUpstreamNetworks': '[]', 'proxy.hosts': '{}', 'proxy.connectTimeout': '1s' });
    const before = backend.connections.length;
    const conn = await RawConn.open(guarded.tls);
    await conn.write(simpleHello(name));
    conn.end();
    await conn.untilClosed();
    expect(conn.received.equals(ALERT)).toBe(true);
    expect(backend.connections.length).toBe(before);
    expect(guarded.results).toEqual([{ listener: 'tls', result: 'forbidden', decision: null }]);
    expect(guarded.logs.find((l) => l.msg === 'not forwarded')).toMatchObject({ name, outcome: 'forbidden', reason: expect.stringMatching(reason) as unknown });
    await guarded.server.close(100);
  });

  it('HTTP: Host naming a loopback address, or a name resolving to one, gets 403 and no upstream request', async () => {
    const guarded = await startProxy({ 'proxy.allowedUpstreamNetworks': '[]', 'proxy.hosts': '{}' });
    const seen = httpSeen.length;
    for (const host of [`127.0.0.1:${httpPort}`, `ssrf-loop.test:${httpPort}`, `metadata.test`]) {
      const conn = await RawConn.open(guarded.http);
      await conn.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      await conn.untilClosed();
      expect(conn.responses()[0]?.status, host).toBe(403);
    }
    expect(httpSeen.length).toBe(seen);
    await guarded.server.close(100);
  });

  it('an allowed-looking name that resolves into a blocked app range (LINE 147.92.128.0/17) is blocked before any dial', async () => {
    const conn = await RawConn.open(main.tls);
    await conn.write(simpleHello('innocent.test'));
    conn.end();
    await conn.untilClosed();
    expect(conn.received.equals(ALERT)).toBe(true);
    expect(main.results.at(-1)).toEqual({ listener: 'tls', result: 'blocked', decision: { verdict: 'block', app: 'line', rule: 'cidr:147.92.128.0/17', layer: 'tls' } });
    const http = await RawConn.open(main.http);
    await http.write('GET / HTTP/1.1\r\nHost: innocent.test\r\n\r\n');
    await http.untilClosed();
    const [response] = http.responses();
    expect(response?.status).toBe(451);
    expect(response?.body).toContain('line');
  });
});

describe('TLS proxy: deadlines and limits', () => {
  it('a hello trickled one byte per second is closed at the 1 s deadline while other connections keep working', async () => {
    const slow = await startProxy({ 'proxy.clientHelloTimeout': '1s' });
    const conn = await RawConn.open(slow.tls);
    const bytes = simpleHello(ALLOWED);
    const trickle = (async () => {
      // Bytes at 0.3 s, 1.3 s, ...: none lands right at the 1 s deadline.
      await sleep(300);
      for (let i = 0; i < bytes.length && !conn.isClosed; i++) {
        await conn.write(bytes.subarray(i, i + 1));
        await sleep(1_000);
      }
    })();
    // Meanwhile, full connections through the same listener are served.
    await sleep(200);
    expect(await tlsGet(slow.tls, ALLOWED)).toMatch(/^HTTP\/1\.1 200/);
    await conn.untilClosed(3_000);
    const elapsed = conn.closedAt - conn.openedAt;
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2_000);
    expect(conn.received.equals(ALERT)).toBe(true);
    expect(slow.results.map((r) => r.result)).toEqual(['forwarded', 'timeout']);
    await trickle;
    await slow.server.close(100);
  });

  it.each(['tls', 'connect'] as const)('%s: a client that goes away while its upstream is being dialled leaves no upstream connection open', async (via) => {
    // DNS that takes 200 ms: the client is gone before the dial completes.
    const slowResolver: AddressResolver = {
      resolve: async (name) => {
        await sleep(200);
        return name === 'slow.test' ? ['127.0.0.1'] : [];
      },
    };
    const proxy = await startProxy({}, 'info', slowResolver);
    const before = backend.connections.length;
    const conn = await RawConn.open(via === 'tls' ? proxy.tls : proxy.http);
    await conn.write(via === 'tls' ? simpleHello('slow.test') : `CONNECT slow.test:${backend.port} HTTP/1.1\r\nHost: slow.test\r\n\r\n`);
    await sleep(50);
    conn.reset();
    const started = Date.now();
    while (backend.connections.length === before && Date.now() - started < 2_000) await sleep(10);
    const late = backend.connections.slice(before);
    // Either nothing was dialled, or what was dialled is closed again at once.
    await Promise.race([Promise.all(late.map((c) => c.closed)), sleep(1_000).then(() => Promise.reject(new Error('upstream left open')))]);
    await proxy.server.close(100);
  });

  it('refuses connections beyond maxConnectionsPerClient and maxConnections', async () => {
    const capped = await startProxy({ 'proxy.maxConnectionsPerClient': '2', 'proxy.maxConnections': '3', 'proxy.clientHelloTimeout': '10s' });
    const a1 = await RawConn.open(capped.tls);
    const a2 = await RawConn.open(capped.tls);
    const a3 = await RawConn.open(capped.tls);
    // The third from 127.0.0.1 is closed at once, unread.
    await a3.untilClosed(2_000);
    expect(a3.received.length).toBe(0);
    expect(capped.results).toEqual([{ listener: 'tls', result: 'limited', decision: null }]);
    // Another client address still gets a slot (the per-client cap is per client)...
    const b1 = await RawConn.open(capped.tls, { localAddress: '127.0.0.2' });
    await sleep(200);
    expect(b1.isClosed).toBe(false);
    // ...until the listener's total is reached.
    const c1 = await RawConn.open(capped.tls, { localAddress: '127.0.0.3' });
    await c1.untilClosed(2_000);
    expect(a1.isClosed || a2.isClosed || b1.isClosed).toBe(false);
    // A slot freed is a slot usable again.
    a1.destroy();
    b1.destroy();
    await sleep(300);
    expect(await tlsGet(capped.tls, ALLOWED)).toMatch(/^HTTP\/1\.1 200/);
    a2.destroy();
    await capped.server.close(100);
  });

  it('close() stops accepting and ends open connections within the drain time', async () => {
    const draining = await startProxy();
    const idle = await RawConn.open(draining.tls);
    const before = backend.connections.length;
    const tunnel = await RawConn.open(draining.tls);
    await tunnel.write(simpleHello(ALLOWED));
    await tunnel.until(() => backend.connections.length > before);
    const started = Date.now();
    const closing = draining.server.close(600);
    await expect(RawConn.open(draining.tls)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await closing;
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(1_500);
    await idle.untilClosed(500);
    await tunnel.untilClosed(500);
    await backend.connections[before]!.closed;
  });

  it('close() returns at once when nothing is open', async () => {
    const quiet = await startProxy();
    const started = Date.now();
    await quiet.server.close(5_000);
    expect(Date.now() - started).toBeLessThan(500);
  });
});

// ---- HTTP ----------------------------------------------------------------------------------

describe('HTTP proxy', () => {
  async function exchange(request: string | Buffer, segments = 1): Promise<{ conn: RawConn; responses: HttpResponse[] }> {
    const conn = await RawConn.open(main.http);
    const bytes = Buffer.isBuffer(request) ? request : Buffer.from(request, 'latin1');
    const step = Math.ceil(bytes.length / segments);
    await conn.writeSegments(splitAt(bytes, Array.from({ length: segments - 1 }, (_, i) => (i + 1) * step).filter((o) => o < bytes.length)));
    await conn.untilClosed();
    return { conn, responses: conn.responses() };
  }

  it('GET with Host allowed.test reaches the backend, unchanged', async () => {
    const { responses } = await exchange(`GET /path?q=1 HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: close\r\n\r\n`);
    expect(responses).toHaveLength(1);
    expect(responses[0]!.status).toBe(200);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ method: 'GET', url: '/path?q=1', host: ALLOWED, hostCount: 1 });
  });

  it('Host talk-pilsner.kakao.com: 451 naming kakaotalk, nothing sent upstream', async () => {
    const seen = httpSeen.length;
    const { responses } = await exchange(`GET / HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`);
    expect(responses[0]?.status).toBe(451);
    expect(responses[0]?.body).toContain('kakaotalk');
    expect(httpSeen.length).toBe(seen);
    expect(main.logs.at(-1)).toMatchObject({ msg: 'blocked', app: 'kakaotalk', layer: 'http' });
  });

  it.each([
    ['mixed case', 'TALK-Pilsner.Kakao.COM'],
    ['trailing dot', `${KAKAO}.`],
    ['with a port', `${KAKAO}:8080`],
  ])('Host with %s is still blocked', async (_what, host) => {
    const { responses } = await exchange(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    expect(responses[0]?.status).toBe(451);
  });

  it('duplicate Host: 400', async () => {
    const seen = httpSeen.length;
    const { responses } = await exchange(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nHost: ${KAKAO}\r\n\r\n`);
    expect(responses[0]?.status).toBe(400);
    expect(httpSeen.length).toBe(seen);
  });

  it('oversized head: 431', async () => {
    const { responses } = await exchange(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nX-Fill: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(responses[0]?.status).toBe(431);
  });

  it('the absolute-URI authority wins over Host, and is the Host the backend gets', async () => {
    const blocked = await exchange(`GET http://${KAKAO}/ HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`);
    expect(blocked.responses[0]?.status).toBe(451);
    const allowed = await exchange(`GET http://${ALLOWED}:${httpPort}/x HTTP/1.1\r\nHost: ${KAKAO}\r\nConnection: close\r\n\r\n`);
    expect(allowed.responses[0]?.status).toBe(200);
    expect(JSON.parse(allowed.responses[0]!.body)).toMatchObject({ url: '/x', host: `${ALLOWED}:${httpPort}`, hostCount: 1 });
  });

  it('a head split across many segments is read whole', async () => {
    const request = `GET /split HTTP/1.1\r\nHost: ${ALLOWED}\r\nUser-Agent: split-test\r\nConnection: close\r\n\r\n`;
    const { responses } = await exchange(request, request.length);
    expect(responses[0]?.status).toBe(200);
    const blocked = `GET /split HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`;
    expect((await exchange(blocked, blocked.length)).responses[0]?.status).toBe(451);
  });

  it('keep-alive: a second request to a blocked host on the same connection gets 451', async () => {
    const conn = await RawConn.open(main.http);
    await conn.write(`GET /first HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`);
    await conn.until(() => conn.responses().length === 1);
    expect(conn.responses()[0]!.status).toBe(200);
    await conn.write(`GET /second HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`);
    await conn.untilClosed();
    expect(conn.responses().map((r) => r.status)).toEqual([200, 451]);
    expect(conn.responses()[1]!.body).toContain('kakaotalk');
  });

  it('pipelined: the first request is answered, the second (blocked) gets 451', async () => {
    const seen = httpSeen.length;
    const { responses } = await exchange(`GET /one HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\nGET /two HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`);
    expect(responses.map((r) => r.status)).toEqual([200, 451]);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ url: '/one' });
    expect(httpSeen.slice(seen).map((s) => s.url)).toEqual(['/one']);
  });

  it('pipelined: two allowed requests are both answered, in order', async () => {
    const { responses } = await exchange(`GET /a HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\nGET /b HTTP/1.1\r\nHost: ${ALLOWED}\r\nConnection: close\r\n\r\n`);
    expect(responses.map((r) => JSON.parse(r.body) as HttpSeen).map((s) => s.url)).toEqual(['/a', '/b']);
  });

  it('a request hidden in a POST body is forwarded as body, and the next real request is still judged', async () => {
    const hidden = `GET / HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`;
    const { responses } = await exchange(
      `POST /body HTTP/1.1\r\nHost: ${ALLOWED}\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}GET /after HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`,
    );
    expect(responses.map((r) => r.status)).toEqual([200, 451]);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ method: 'POST', length: hidden.length, sha256: sha256(Buffer.from(hidden)) });
  });

  it('POST with a Content-Length body is forwarded intact', async () => {
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
    const head = Buffer.from(`POST /upload HTTP/1.1\r\nHost: ${ALLOWED}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    const { responses } = await exchange(Buffer.concat([head, body]), 40);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ method: 'POST', length: body.length, sha256: sha256(body) });
  });

  it('POST with a chunked body is forwarded intact', async () => {
    const parts = [Buffer.from('hello '), Buffer.alloc(70_000, 0x61), Buffer.from('\r\n0\r\n not the end')];
    const framed = Buffer.concat([...parts.flatMap((p, i) => [Buffer.from(`${p.length.toString(16)}${i === 1 ? ';ext=1' : ''}\r\n`), p, Buffer.from('\r\n')]), Buffer.from('0\r\nX-Trailer: t\r\n\r\n')]);
    const head = Buffer.from(`POST /chunked HTTP/1.1\r\nHost: ${ALLOWED}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`);
    const { responses } = await exchange(Buffer.concat([head, framed]), 25);
    const whole = Buffer.concat(parts);
    expect(JSON.parse(responses[0]!.body)).toMatchObject({ transferEncoding: 'chunked', length: whole.length, sha256: sha256(whole) });
  });

  it('CONNECT allowed.test:PORT, then TLS inside, reaches the TLS backend (node:tls and curl -x)', async () => {
    const before = backend.connections.length;
    const conn = await RawConn.open(main.http);
    await conn.write(`CONNECT ${ALLOWED}:${backend.port} HTTP/1.1\r\nHost: ${ALLOWED}:${backend.port}\r\n\r\n`);
    await conn.until(() => conn.received.includes('\r\n\r\n'));
    expect(conn.received.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    const text = await tlsGet(0, ALLOWED, { socket: conn.socketForTls });
    expect(text).toContain(`sni=${ALLOWED}`);
    // The tunnel carries the client's TLS bytes only, not the CONNECT head.
    const tunnelled = await newBackendConnections(before);
    expect(tunnelled).toHaveLength(1);
    expect(tunnelled[0]!.bytes()[0]).toBe(0x16);

    const curl = await run('curl', ['-sS', '-k', '--max-time', '5', '-x', `http://127.0.0.1:${main.http}`, `https://${ALLOWED}:${backend.port}/`]);
    expect(curl.code, curl.stderr).toBe(0);
    expect(curl.stdout).toBe(`tls backend: host=${ALLOWED}:${backend.port} sni=${ALLOWED}\n`);
  });

  it('CONNECT to a blocked host: 451, no upstream connection', async () => {
    const before = backend.connections.length;
    const { responses } = await exchange(`CONNECT ${KAKAO}:${backend.port} HTTP/1.1\r\nHost: ${KAKAO}:${backend.port}\r\n\r\n`);
    expect(responses[0]?.status).toBe(451);
    expect(responses[0]?.body).toContain('kakaotalk');
    expect(backend.connections.length).toBe(before);
  });

  it('CONNECT to an allowed host with a blocked SNI inside: TLS alert, nothing reaches the backend', async () => {
    const before = backend.connections.length;
    const conn = await RawConn.open(main.http);
    await conn.write(`CONNECT ${ALLOWED}:${backend.port} HTTP/1.1\r\nHost: ${ALLOWED}:${backend.port}\r\n\r\n`);
    await conn.until(() => conn.received.includes('\r\n\r\n'));
    await expect(tlsGet(0, KAKAO, { socket: conn.socketForTls })).rejects.toMatchObject({ code: HANDSHAKE_FAILURE_CODE });
    const upstream = await newBackendConnections(before);
    expect(upstream.map((u) => u.bytes().length)).toEqual(upstream.map(() => 0));
    expect(main.results.at(-1)).toMatchObject({ listener: 'http', result: 'blocked', decision: { app: 'kakaotalk', layer: 'tls' } });
  });

  it('CONNECT with the hello sent right behind the request (no wait for 200) is judged too', async () => {
    const before = backend.connections.length;
    const conn = await RawConn.open(main.http);
    await conn.write(Buffer.concat([Buffer.from(`CONNECT ${ALLOWED}:${backend.port} HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`), records(handshake(helloBody({ extensions: [serverName(KAKAO), ...commonExtensions()] })))]));
    conn.end();
    await conn.untilClosed();
    expect(conn.received.subarray(-ALERT.length).equals(ALERT)).toBe(true);
    const upstream = await newBackendConnections(before);
    expect(upstream.map((u) => u.bytes().length)).toEqual(upstream.map(() => 0));
  });
});

describe('HTTP proxy: connection ends', () => {
  it('an upstream that answers and closes while a large body is still being sent: the client connection is closed, not left hanging', async () => {
    // A server that answers 413 at once and drops the connection without reading the body.
    const early = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      socket.destroySoon();
    });
    await new Promise<void>((resolve) => early.listen(0, '127.0.0.1', resolve));
    const proxy = await startProxy({ 'proxy.http.upstreamPort': String((early.address() as AddressInfo).port) });
    try {
      const body = Buffer.alloc(8 * 1024 * 1024, 0x62);
      const conn = await RawConn.open(proxy.http);
      void conn.write(Buffer.concat([Buffer.from(`POST / HTTP/1.1\r\nHost: ${ALLOWED}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]));
      await conn.untilClosed(3_000);
      await proxy.server.close(100);
    } finally {
      await new Promise((resolve) => early.close(resolve));
    }
  });

  it('after a 451 the proxy side closes as soon as the client does: close() then returns at once', async () => {
    const proxy = await startProxy();
    const conn = await RawConn.open(proxy.http);
    await conn.write(`GET / HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`);
    await conn.untilClosed();
    expect(conn.responses()[0]?.status).toBe(451);
    await sleep(50);
    const started = Date.now();
    await proxy.server.close(5_000);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('a client that never closes after a 451 is closed at the half-closed timeout (close() does not wait for it)', async () => {
    const proxy = await startProxy({ 'proxy.halfClosedTimeout': '1s' });
    const socket = connect({ host: '127.0.0.1', port: proxy.http, allowHalfOpen: true });
    socket.on('error', () => undefined);
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    // A body the proxy never forwards (the request is refused), and no FIN from this client.
    socket.write(`POST / HTTP/1.1\r\nHost: ${KAKAO}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(50_000)}`);
    while (!received.includes('</html>')) await sleep(10);
    expect(received).toMatch(/^HTTP\/1\.1 451 /);
    const started = Date.now();
    // Given 10 s to drain, close() returns once the proxy has dropped the lingering client.
    await proxy.server.close(10_000);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(800);
    expect(took).toBeLessThan(2_000);
    socket.destroy();
  });

  it('close() ends a client still lingering after a 451 once the drain time is up', async () => {
    const proxy = await startProxy({ 'proxy.halfClosedTimeout': '10s' });
    const socket = connect({ host: '127.0.0.1', port: proxy.http, allowHalfOpen: true });
    socket.on('error', () => undefined);
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(`GET / HTTP/1.1\r\nHost: ${KAKAO}\r\n\r\n`);
    while (!received.includes('</html>')) await sleep(10);
    const started = Date.now();
    await proxy.server.close(300);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(1_000);
    socket.destroy();
  });
});

// ---- the acceptance, through the CLI -----------------------------------------------

describe('portcullis start (spawned)', () => {
  it('refuses talk-pilsner.kakao.com with curl --resolve while an allowed name reaches its backend; SIGTERM exits 0', async () => {
    const [dnsPort, tlsPort, httpListen, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const config = join(dir, 'start.yaml');
    await writeFile(
      config,
      [
        'dns:',
        `  listen: 127.0.0.1:${dnsPort}`,
        `  upstreams: [${dns.target}]`,
        'proxy:',
        `  tls: { listen: 127.0.0.1:${tlsPort}, upstreamPort: ${backend.port} }`,
        `  http: { listen: 127.0.0.1:${httpListen}, upstreamPort: ${httpPort} }`,
        `  hosts: { ${ALLOWED}: 127.0.0.1, ${KAKAO}: 127.0.0.1 }`,
        '  allowedUpstreamNetworks: [127.0.0.0/8]',
        `admin: { listen: 127.0.0.1:${adminPort} }`,
        `store: { path: ${join(dir, 'data')} }`,
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [CLI, 'start', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
    const lines: LogLine[] = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(JSON.parse(line) as LogLine);
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      const deadline = Date.now() + 10_000;
      while (!lines.some((l) => l.msg === 'portcullis started')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`not started: ${stderr} ${JSON.stringify(lines)}`);
        await sleep(20);
      }
      expect(lines.find((l) => l.msg === 'proxy listening')).toMatchObject({ tls: { address: '127.0.0.1', port: tlsPort } });
      const before = backend.connections.length;
      const blocked = await run('curl', ['-sS', '-k', '--max-time', '5', '--resolve', `${KAKAO}:${tlsPort}:127.0.0.1`, `https://${KAKAO}:${tlsPort}/`]);
      expect(blocked.code).toBe(35);
      expect(blocked.stderr).toMatch(/handshake failure/);
      expect(backend.connections.length).toBe(before);
      const allowed = await run('curl', ['-sS', '-k', '--max-time', '5', '--resolve', `${ALLOWED}:${tlsPort}:127.0.0.1`, `https://${ALLOWED}:${tlsPort}/`]);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(allowed.stdout).toBe(`tls backend: host=${ALLOWED}:${tlsPort} sni=${ALLOWED}\n`);
      expect(lines.find((l) => l.msg === 'blocked')).toMatchObject({ app: 'kakaotalk', layer: 'tls', name: KAKAO });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

describe('HTTP upgrade', () => {
  it('after an Upgrade request the connection becomes a tunnel to the decided destination', async () => {
    const upgradeServer = createServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
        socket.on('data', (chunk: Buffer) => socket.write(chunk));
      });
    });
    await new Promise<void>((resolve) => upgradeServer.listen(0, '127.0.0.1', resolve));
    const upgradePort = (upgradeServer.address() as AddressInfo).port;
    try {
      const conn = await RawConn.open(main.http);
      await conn.write(`GET http://${ALLOWED}:${upgradePort}/ HTTP/1.1\r\nHost: ${ALLOWED}:${upgradePort}\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n`);
      await conn.until(() => conn.received.toString('latin1').includes('101 Switching Protocols'));
      // Frames after the 101 are not HTTP heads: they must pass through, not earn a 400.
      await conn.write('\x81\x05hello not-an-http-head');
      await conn.until(() => conn.received.toString('latin1').includes('not-an-http-head'));
      conn.destroy();
    } finally {
      upgradeServer.close();
    }
  });
});

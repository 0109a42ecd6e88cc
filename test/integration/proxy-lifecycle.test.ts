import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simpleHello } from '../support/client-hello.js';
import { startGateway, type GatewayProcess } from '../support/gateway-process.js';
import { proxyState, restingDescriptors, settle, startBlackhole } from '../support/gateway-observer.js';
import { startLifecycleBackend, type Behaviour, type LifecycleBackend } from '../support/lifecycle-backend.js';
import { startNginx, type Nginx } from '../support/nginx.js';

/**
 * Every way a proxied connection can end, on every explicit listener, each run more times than
 * the per-client limit from one address: after each, the gateway must hold nothing (active
 * gauges 0, its descriptors back to where they were) and must have refused nobody as limited.
 * The gateway is the real `portcullis start` process; the servers behind it are a scriptable
 * backend (one behaviour per name) and nginx; the clients are raw sockets, curl, h2load and
 * openssl s_client.
 */
const execFileAsync = promisify(execFile);
const PER_CLIENT = 8;
const REPS = PER_CLIENT + 2;
const UPLOAD_BYTES = 100_000;
const HALF_CLOSED_MS = 500;
const ALERT_BYTE = 0x15;
const KAKAO = 'talk-pilsner.kakao.com';

type Flavor = 'tls' | 'connect' | 'http';

/** A client socket and what happened to it. */
class Probe {
  received = Buffer.alloc(0);
  error: string | null = null;
  isEnded = false;
  isClosed = false;
  readonly closed: Promise<void>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error ??= e.code ?? e.message;
    });
    socket.on('end', () => {
      this.isEnded = true;
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** `halfOpen`: the client does not end its side when the server ends (to write after the server's FIN). */
  static open(port: number, halfOpen = false): Promise<Probe> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: halfOpen });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Probe(socket));
      });
      socket.once('error', reject);
    });
  }

  text(): string {
    return this.received.toString('latin1');
  }

  write(data: Buffer | string): void {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(data);
  }

  until(predicate: () => boolean, what: string, timeoutMs = 4_000): Promise<void> {
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
        reject(new Error(`${what}: not within ${timeoutMs} ms (received ${JSON.stringify(this.text().slice(0, 200))}, ended ${this.isEnded}, closed ${this.isClosed}, error ${this.error})`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  untilClosed(timeoutMs = 4_000): Promise<void> {
    return this.until(() => this.isClosed, 'closed', timeoutMs);
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

let dir = '';
let tunnelBackend: LifecycleBackend;
let httpBackend: LifecycleBackend;
let gateway: GatewayProcess;
let baseline = 0;
const blackholes: ChildProcess[] = [];

const name = (behaviour: Behaviour | 'dead' | 'blackhole'): string => `${behaviour}.life.test`;

/** A connection through `flavor` to the backend playing `behaviour`, past the point where the proxy has decided. */
async function open(flavor: Flavor, behaviour: Behaviour, halfOpen = false): Promise<Probe> {
  if (flavor === 'tls') {
    const probe = await Probe.open(gateway.tlsPort, halfOpen);
    probe.write(simpleHello(name(behaviour)));
    return probe;
  }
  const probe = await Probe.open(gateway.httpPort, halfOpen);
  if (flavor === 'http') {
    probe.write(`GET / HTTP/1.1\r\nHost: ${name(behaviour)}\r\n\r\n`);
    return probe;
  }
  probe.write(`CONNECT ${name(behaviour)}:${tunnelBackend.port} HTTP/1.1\r\nHost: ${name(behaviour)}:${tunnelBackend.port}\r\n\r\n`);
  const established = 'HTTP/1.1 200 Connection Established\r\n\r\n';
  await probe.until(() => probe.text().startsWith(established), 'CONNECT established');
  probe.received = probe.received.subarray(established.length);
  probe.write(simpleHello(name(behaviour)));
  return probe;
}

/** The body of the answer the backend sends, as the client sees it. */
const ANSWERED = 'answer';

/** Runs `body` `REPS` times, at most `concurrency` at once (below the per-client limit), then checks the gateway holds nothing. */
async function repeatAndSettle(body: (rep: number) => Promise<void>, concurrency = 1): Promise<void> {
  const before = await proxyState(gateway.adminUrl, gateway.child.pid!);
  for (let rep = 0; rep < REPS; rep += concurrency) {
    await Promise.all(Array.from({ length: Math.min(concurrency, REPS - rep) }, (_, i) => body(rep + i)));
  }
  const after = await settle(gateway.adminUrl, gateway.child.pid!, baseline);
  expect(after.active, 'proxy connections still counted open').toBe(0);
  expect(after.descriptors, 'descriptors back to the baseline').toBeLessThanOrEqual(baseline);
  expect(after.limited - before.limited, 'connections refused as limited').toBe(0);
}

/**
 * A half-open client (it got FIN and never closes its side) cannot see the gateway close its
 * socket until it writes again: past the half-closed timeout, its write is answered by a reset,
 * and the write after that fails.
 */
async function expectLetGo(probe: Probe): Promise<void> {
  await sleep(HALF_CLOSED_MS + 200);
  probe.write('more');
  await sleep(100);
  probe.write('more');
  await probe.untilClosed(2_000);
  expect(probe.error).toMatch(/ECONNRESET|EPIPE/);
}

/** The gateway holds no connection well before any timeout could have ended one. */
async function expectReleasedAtOnce(): Promise<void> {
  const started = Date.now();
  for (;;) {
    const state = await proxyState(gateway.adminUrl, gateway.child.pid!);
    if (state.active === 0) break;
    expect(Date.now() - started, 'released before the half-closed timeout').toBeLessThan(HALF_CLOSED_MS / 2);
    await sleep(10);
  }
}

function newConnections(backend: LifecycleBackend, before: number): LifecycleBackend['connections'] {
  return backend.connections.slice(before);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-lifecycle-'));
  tunnelBackend = await startLifecycleBackend({ http: false });
  httpBackend = await startLifecycleBackend({ http: true });
  for (const port of [tunnelBackend.port, httpBackend.port]) blackholes.push((await startBlackhole('127.0.0.3', port)).child);
  const hosts = Object.fromEntries([
    ...['answer-close', 'answer-wait', 'answer-destroy', 'reset', 'reset-mid', 'half-close-server', 'half-close-client', 'silent'].map((b) => [`${b}.life.test`, '127.0.0.1']),
    [name('dead'), '127.0.0.2'],
    [name('blackhole'), '127.0.0.3'],
  ]);
  const config = join(dir, 'portcullis.yaml');
  await writeFile(
    config,
    [
      'dns: { listen: 127.0.0.1:0, upstreams: [127.0.0.1:1] }',
      'proxy:',
      `  tls: { listen: 127.0.0.1:0, upstreamPort: ${tunnelBackend.port} }`,
      `  http: { listen: 127.0.0.1:0, upstreamPort: ${httpBackend.port} }`,
      `  hosts: ${JSON.stringify(hosts)}`,
      '  allowedUpstreamNetworks: [127.0.0.0/8]',
      `  maxConnectionsPerClient: ${PER_CLIENT}`,
      '  clientHelloTimeout: 500ms',
      '  connectTimeout: 500ms',
      '  idleTimeout: 700ms',
      `  halfClosedTimeout: ${HALF_CLOSED_MS}ms`,
      'admin: { listen: 127.0.0.1:0 }',
      `store: { path: ${join(dir, 'data')} }`,
      '',
    ].join('\n'),
  );
  gateway = await startGateway(config);
  // One connection of each kind first: lazily made descriptors (an upstream socket pool, a
  // timer fd) belong to the baseline, not to a leak.
  for (const flavor of ['tls', 'connect', 'http'] as const) {
    const probe = await open(flavor, 'answer-close');
    await probe.untilClosed();
  }
  await settle(gateway.adminUrl, gateway.child.pid!, Number.POSITIVE_INFINITY);
  baseline = await restingDescriptors(gateway.child.pid!);
});

afterAll(async () => {
  const code = await gateway.stop();
  expect(code).toBe(0);
  for (const child of blackholes) child.kill('SIGKILL');
  await tunnelBackend.close();
  await httpBackend.close();
  await rm(dir, { recursive: true, force: true });
  const errors = gateway.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
  expect(errors).toEqual([]);
});

describe.each(['tls', 'connect'] as const)('lifecycle, %s tunnel', (flavor) => {
  const backendBefore = (): number => tunnelBackend.connections.length;

  it('server FIN first: the client gets the answer, then FIN', async () => {
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'answer-close');
      await probe.untilClosed();
      expect(probe.text()).toContain(ANSWERED);
      expect(probe.error).toBeNull();
    });
  });

  it('client FIN first: the server sees it, and closes', async () => {
    const before = backendBefore();
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'answer-wait');
      await probe.until(() => probe.text().includes(ANSWERED), 'answer');
      probe.socket.end();
      await probe.untilClosed();
    });
    for (const c of newConnections(tunnelBackend, before)) expect(c.ended).toBe('end');
  });

  it('client RST: the server is reset too', async () => {
    const before = backendBefore();
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'answer-wait');
      await probe.until(() => probe.text().includes(ANSWERED), 'answer');
      probe.socket.resetAndDestroy();
    });
    const fresh = newConnections(tunnelBackend, before);
    await Promise.all(fresh.map((c) => c.closed));
    for (const c of fresh) expect(c.ended).toBe('error');
  });

  it('upstream RST: the client is reset too', async () => {
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'reset');
      await probe.untilClosed();
      expect(probe.error).toBe('ECONNRESET');
    });
  });

  it('half-close, client to server: the upload and its FIN arrive, the answer comes back after', async () => {
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'half-close-client', true);
      probe.write(Buffer.alloc(UPLOAD_BYTES, 0x61));
      probe.socket.end();
      await probe.until(() => probe.isEnded, 'server FIN');
      const got = Number(/got (\d+)/.exec(probe.text())?.[1]);
      expect(got).toBeGreaterThanOrEqual(UPLOAD_BYTES);
      await probe.untilClosed();
    });
  });

  it('half-close, server to client: after the server FINs, the client still uploads all it has', async () => {
    const before = backendBefore();
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'half-close-server', true);
      await probe.until(() => probe.isEnded && probe.text().includes(ANSWERED), 'answer and server FIN');
      probe.write(Buffer.alloc(UPLOAD_BYTES, 0x62));
      probe.socket.end();
      await probe.untilClosed();
    });
    const fresh = newConnections(tunnelBackend, before);
    await Promise.all(fresh.map((c) => c.closed));
    for (const c of fresh) expect(c.receivedAfterFin).toBe(UPLOAD_BYTES);
  });

  it('the client writes after the server closed, and never closes: the gateway lets go within the half-closed timeout', async () => {
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'answer-destroy', true);
      await probe.until(() => probe.isEnded, 'server FIN');
      probe.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n');
      await expectLetGo(probe);
    }, 4);
  });

  it('the client writes after the server closed, then closes: the gateway lets go at once, not at a timeout', async () => {
    await repeatAndSettle(async () => {
      const probe = await open(flavor, 'answer-destroy', true);
      await probe.until(() => probe.isEnded, 'server FIN');
      probe.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n');
      await sleep(20);
      probe.socket.end();
      await expectReleasedAtOnce();
    });
  });

  it('abort before the hello (FIN, then RST)', async () => {
    await repeatAndSettle(async (rep) => {
      const probe = await Probe.open(flavor === 'tls' ? gateway.tlsPort : gateway.httpPort);
      if (flavor === 'connect') probe.write(`CONNECT ${name('answer-wait')}:${tunnelBackend.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
      if (rep % 2 === 0) probe.socket.end();
      else probe.socket.resetAndDestroy();
      await probe.untilClosed();
    });
  });

  it('abort in the middle of the hello', async () => {
    await repeatAndSettle(async () => {
      const hello = simpleHello(name('answer-wait'));
      const probe = await Probe.open(flavor === 'tls' ? gateway.tlsPort : gateway.httpPort);
      if (flavor === 'connect') {
        probe.write(`CONNECT ${name('answer-wait')}:${tunnelBackend.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await probe.until(() => probe.text().includes('200 Connection Established'), 'CONNECT established');
      }
      probe.write(hello.subarray(0, hello.length >> 1));
      await sleep(20);
      probe.socket.resetAndDestroy();
      await probe.untilClosed();
    });
  });

  it('blocked SNI: a handshake_failure alert, and the backend never gets a byte of it', async () => {
    const before = backendBefore();
    await repeatAndSettle(async () => {
      const probe = await Probe.open(flavor === 'tls' ? gateway.tlsPort : gateway.httpPort);
      if (flavor === 'connect') {
        // The tunnel is opened to an allowed host; the SNI inside names a blocked one.
        probe.write(`CONNECT ${name('answer-wait')}:${tunnelBackend.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await probe.until(() => probe.text().includes('200 Connection Established'), 'CONNECT established');
        probe.received = Buffer.alloc(0);
      }
      probe.write(simpleHello(KAKAO));
      await probe.untilClosed();
      expect(probe.received[0]).toBe(ALERT_BYTE);
    });
    const fresh = newConnections(tunnelBackend, before);
    await Promise.all(fresh.map((c) => c.closed));
    for (const c of fresh) expect(c.received).toBe(0);
  });

  it('dial failure (connection refused): refused to the client, nothing left open', async () => {
    await repeatAndSettle(async () => {
      if (flavor === 'tls') {
        const probe = await Probe.open(gateway.tlsPort);
        probe.write(simpleHello(name('dead')));
        await probe.untilClosed();
        expect(probe.received[0]).toBe(ALERT_BYTE);
      } else {
        const probe = await Probe.open(gateway.httpPort);
        probe.write(`CONNECT ${name('dead')}:${tunnelBackend.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await probe.untilClosed();
        expect(probe.text()).toMatch(/^HTTP\/1\.1 502 /);
      }
    });
  });

  it('connect timeout (a server that drops SYNs): refused after proxy.connectTimeout', async () => {
    await repeatAndSettle(async () => {
      const started = Date.now();
      if (flavor === 'tls') {
        const probe = await Probe.open(gateway.tlsPort);
        probe.write(simpleHello(name('blackhole')));
        await probe.untilClosed(3_000);
        expect(probe.received[0]).toBe(ALERT_BYTE);
      } else {
        const probe = await Probe.open(gateway.httpPort);
        probe.write(`CONNECT ${name('blackhole')}:${tunnelBackend.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
        await probe.untilClosed(3_000);
        expect(probe.text()).toMatch(/^HTTP\/1\.1 502 /);
      }
      expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    }, 4);
  });

  it('idle timeout: a tunnel with no byte either way is closed', async () => {
    await repeatAndSettle(async () => {
      const started = Date.now();
      const probe = await open(flavor, 'silent');
      await probe.untilClosed(3_000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    }, 4);
  });
});

describe('lifecycle, plain HTTP', () => {
  const request = (host: string, extra = ''): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

  it('server FIN first (Connection: close): the client gets the response, then FIN', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-close');
      await probe.untilClosed();
      expect(probe.text()).toMatch(/^HTTP\/1\.1 200 OK/);
    });
  });

  it('client FIN first on a keep-alive connection', async () => {
    const before = httpBackend.connections.length;
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-wait');
      await probe.until(() => probe.text().includes(ANSWERED), 'response');
      probe.socket.end();
      await probe.untilClosed();
    });
    const fresh = newConnections(httpBackend, before);
    await Promise.all(fresh.map((c) => c.closed));
  });

  it('client RST after a response: the upstream connection goes too', async () => {
    const before = httpBackend.connections.length;
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-wait');
      await probe.until(() => probe.text().includes(ANSWERED), 'response');
      probe.socket.resetAndDestroy();
    });
    const fresh = newConnections(httpBackend, before);
    await Promise.all(fresh.map((c) => c.closed));
  });

  it('upstream RST in the middle of a response: the client is reset, not handed a short body as complete', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'reset-mid');
      await probe.untilClosed();
      expect(probe.error).toBe('ECONNRESET');
    });
  });

  it('half-close, client to server: a request and its body, then FIN; the response still comes back', async () => {
    await repeatAndSettle(async () => {
      const probe = await Probe.open(gateway.httpPort, true);
      probe.write(`POST / HTTP/1.1\r\nHost: ${name('half-close-client')}\r\nContent-Length: ${UPLOAD_BYTES}\r\n\r\n`);
      probe.write(Buffer.alloc(UPLOAD_BYTES, 0x63));
      probe.socket.end();
      await probe.until(() => probe.isEnded, 'response and FIN');
      expect(probe.text()).toMatch(/^HTTP\/1\.1 200 OK/);
      expect(Number(/got (\d+)/.exec(probe.text())?.[1])).toBeGreaterThanOrEqual(UPLOAD_BYTES);
      await probe.untilClosed();
    });
  });

  it('half-close, server to client: a close-delimited response ends with the server FIN', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'half-close-server');
      await probe.untilClosed();
      expect(probe.text()).toMatch(/^HTTP\/1\.1 200 OK\r\nconnection: close\r\n\r\nanswer$/);
    });
  });

  it('the client sends its next request after the server closed, and never closes: the gateway lets go within the half-closed timeout', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-destroy', true);
      await probe.until(() => probe.isEnded, 'server FIN');
      probe.write(request(name('answer-destroy')));
      await expectLetGo(probe);
    }, 4);
  });

  it('the client sends its next request after the server closed, then closes: the gateway lets go at once', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-destroy', true);
      await probe.until(() => probe.isEnded, 'server FIN');
      probe.write(request(name('answer-destroy')));
      await sleep(20);
      probe.socket.end();
      await expectReleasedAtOnce();
    });
  });

  it('abort before the request, and in the middle of its head', async () => {
    await repeatAndSettle(async (rep) => {
      const probe = await Probe.open(gateway.httpPort);
      if (rep % 2 === 1) {
        probe.write('GET / HTTP/1.1\r\nHo');
        await sleep(20);
      }
      probe.socket.resetAndDestroy();
      await probe.untilClosed();
    });
  });

  it('blocked Host: 451, and the backend never sees it', async () => {
    const before = httpBackend.connections.length;
    await repeatAndSettle(async () => {
      const probe = await Probe.open(gateway.httpPort);
      probe.write(request(KAKAO));
      await probe.untilClosed();
      expect(probe.text()).toMatch(/^HTTP\/1\.1 451 /);
    });
    expect(httpBackend.connections.length).toBe(before);
  });

  it('dial failure: 502', async () => {
    await repeatAndSettle(async () => {
      const probe = await Probe.open(gateway.httpPort);
      probe.write(request(name('dead')));
      await probe.untilClosed();
      expect(probe.text()).toMatch(/^HTTP\/1\.1 502 /);
    });
  });

  it('connect timeout: 502 after proxy.connectTimeout', async () => {
    await repeatAndSettle(async () => {
      const probe = await Probe.open(gateway.httpPort);
      probe.write(request(name('blackhole')));
      await probe.untilClosed(3_000);
      expect(probe.text()).toMatch(/^HTTP\/1\.1 502 /);
    }, 4);
  });

  it('idle timeout: a keep-alive connection with no next request is closed', async () => {
    await repeatAndSettle(async () => {
      const probe = await open('http', 'answer-wait');
      await probe.until(() => probe.text().includes(ANSWERED), 'response');
      const started = Date.now();
      await probe.untilClosed(3_000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    }, 4);
  });
});

describe('lifecycle with real clients and nginx', () => {
  let nginx: Nginx;
  let real: GatewayProcess;
  let realBaseline = 0;
  const NAME = 'nginx.life.test';

  const settleReal = async (): Promise<void> => {
    const after = await settle(real.adminUrl, real.child.pid!, realBaseline);
    expect(after.active).toBe(0);
    expect(after.descriptors).toBeLessThanOrEqual(realBaseline);
    expect(after.limited).toBe(0);
  };

  beforeAll(async () => {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await execFileAsync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`, '-days', '1', '-keyout', key, '-out', cert]);
    nginx = await startNginx(
      join(dir, 'nginx'),
      [
        { name: 'tls-close', tls: true, keepaliveSeconds: 0 },
        { name: 'tls-keep', tls: true, keepaliveSeconds: 60, tlsProtocols: 'TLSv1.2' },
        { name: 'http-close', tls: false, keepaliveSeconds: 0 },
        { name: 'http-keep', tls: false, keepaliveSeconds: 60 },
      ],
      { cert, key },
    );
    const config = join(dir, 'portcullis-real.yaml');
    await writeFile(
      config,
      [
        'dns: { listen: 127.0.0.1:0, upstreams: [127.0.0.1:1] }',
        'proxy:',
        `  tls: { listen: 127.0.0.1:0, upstreamPort: ${nginx.ports['tls-close']} }`,
        `  http: { listen: 127.0.0.1:0, upstreamPort: ${nginx.ports['http-close']} }`,
        `  hosts: { ${NAME}: 127.0.0.1 }`,
        '  allowedUpstreamNetworks: [127.0.0.0/8]',
        `  maxConnectionsPerClient: ${PER_CLIENT}`,
        'admin: { listen: 127.0.0.1:0 }',
        `store: { path: ${join(dir, 'data-real')} }`,
        '',
      ].join('\n'),
    );
    real = await startGateway(config);
    await execFileAsync('curl', ['-sk', '--resolve', `${NAME}:${real.tlsPort}:127.0.0.1`, `https://${NAME}:${real.tlsPort}/small`]);
    await settle(real.adminUrl, real.child.pid!, Number.POSITIVE_INFINITY);
    realBaseline = await restingDescriptors(real.child.pid!);
  });

  afterAll(async () => {
    expect(await real.stop()).toBe(0);
    await nginx.stop();
  });

  it('h2load, 600 requests over 4 connections at a time, server closes after each response (TLS listener): 600 of 600', async () => {
    const { stdout } = await execFileAsync('h2load', ['--h1', '-n', '600', '-c', '4', `--connect-to=127.0.0.1:${real.tlsPort}`, `https://${NAME}:${nginx.ports['tls-close']}/small`], { timeout: 60_000 });
    expect(stdout).toMatch(/requests: 600 total, 600 started, 600 done, 600 succeeded, 0 failed, 0 errored/);
    await settleReal();
  });

  it.each(['http-close', 'http-keep'] as const)('h2load through the HTTP listener to nginx (%s): 600 of 600', async (site) => {
    const { stdout } = await execFileAsync('h2load', ['--h1', '-n', '600', '-c', '4', `--connect-to=127.0.0.1:${real.httpPort}`, `http://${NAME}:${nginx.ports[site]}/small`], { timeout: 60_000 });
    expect(stdout).toMatch(/requests: 600 total, 600 started, 600 done, 600 succeeded, 0 failed, 0 errored/);
    await settleReal();
  });

  it('curl through each listener, more times than the per-client limit: TLS (SNI), HTTP (absolute-form), CONNECT (TLS 1.2 keep-alive nginx)', async () => {
    for (let i = 0; i < REPS; i++) {
      const viaTls = await execFileAsync('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `${NAME}:${real.tlsPort}:127.0.0.1`, `https://${NAME}:${real.tlsPort}/small`]);
      const viaHttp = await execFileAsync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${real.httpPort}`, `http://${NAME}:${nginx.ports['http-keep']}/small`]);
      const viaConnect = await execFileAsync('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://127.0.0.1:${real.httpPort}`, `https://${NAME}:${nginx.ports['tls-keep']}/small`]);
      expect([viaTls.stdout, viaHttp.stdout, viaConnect.stdout]).toEqual(['200', '200', '200']);
    }
    await settleReal();
  });

  it('openssl s_client, more times than the per-client limit', async () => {
    for (let i = 0; i < REPS; i++) {
      const output = await new Promise<string>((resolve) => {
        const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${real.tlsPort}`, '-servername', NAME, '-quiet'], { timeout: 10_000 }, (_error, stdout) => resolve(stdout));
        child.stdin!.end(`GET /small HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n`);
      });
      expect(output).toContain('HTTP/1.1 200 OK');
    }
    await settleReal();
  });
});

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { metricValue, scrape } from '../support/gateway-observer.js';

/**
 * A policy change reaches connections already open: each is decided again on what it was
 * allowed on, and those now blocked end within 100 ms of the API's 2xx — TLS tunnels reset,
 * idle HTTP keep-alive connections closed at once, one with a response in flight closed when
 * that response ends (any further request on it answered 451). Connections the change does
 * not touch stay open and usable.
 */
const execFileAsync = promisify(execFile);
const CUT_WITHIN_MS = 100;
const SLOW_MS = 400;
const NAMES = ['cut-tls.test', 'keep-tls.test', 'cut-http.test', 'keep-http.test', 'cut-slow.test', 'cut-connect.test'];

let dir = '';
let https: HttpsServer;
let http: HttpServer;
let gateway: GatewayProcess;
const seen: { host: string; url: string }[] = [];

function handler(req: IncomingMessage, res: ServerResponse): void {
  seen.push({ host: req.headers.host ?? '', url: req.url ?? '' });
  req.resume();
  const reply = (): void => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    res.end('ok\n');
  };
  if (req.url === '/slow') setTimeout(reply, SLOW_MS);
  else reply();
}

/** A client connection and when it ended. */
interface Watched<S extends Socket> {
  socket: S;
  text(): string;
  closedAt(): number | null;
  closed: Promise<void>;
  error(): string | null;
}

function watch<S extends Socket>(socket: S): Watched<S> {
  let text = '';
  let closedAt: number | null = null;
  let error: string | null = null;
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closedAt = performance.now();
      resolve();
    }),
  );
  return { socket, text: () => text, closedAt: () => closedAt, closed, error: () => error };
}

async function until(predicate: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
}

const responses = (text: string): number => (text.match(/HTTP\/1\.1 \d{3} /g) ?? []).length;

/** A keep-alive TLS connection through the TLS listener, one request answered. */
async function openTls(name: string): Promise<Watched<TLSSocket>> {
  const socket = tlsConnect({ host: '127.0.0.1', port: gateway.tlsPort, servername: name, rejectUnauthorized: false });
  const watched = watch(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  socket.write(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
  await until(() => watched.text().includes('ok\n'), 'TLS response');
  return watched;
}

/** A keep-alive HTTP connection through the HTTP listener, one request answered. */
async function openHttp(name: string): Promise<Watched<Socket>> {
  const socket = connect(gateway.httpPort, '127.0.0.1');
  const watched = watch(socket);
  socket.write(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`);
  await until(() => watched.text().includes('ok\n'), 'HTTP response');
  return watched;
}

let lastRuleId = '';

/** Blocks `name` through the admin API; the time its 2xx arrived. */
async function block(name: string): Promise<number> {
  const response = await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: name, action: 'block' });
  const at = performance.now();
  expect(response.status).toBe(201);
  lastRuleId = (response.body as { id: string }).id;
  return at;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cut-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  await execFileAsync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=cut', '-addext', `subjectAltName=${NAMES.map((n) => `DNS:${n}`).join(',')}`, '-days', '1', '-keyout', key, '-out', cert]);
  https = createHttpsServer({ key: await readFile(key), cert: await readFile(cert), keepAliveTimeout: 60_000 }, handler);
  http = createHttpServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const config = await writeGatewayConfig(dir, {
    upstream: '127.0.0.1:1',
    proxy: {
      tlsUpstreamPort: (https.address() as AddressInfo).port,
      httpUpstreamPort: (http.address() as AddressInfo).port,
      lines: [`hosts: { ${NAMES.map((n) => `${n}: 127.0.0.1`).join(', ')} }`, 'allowedUpstreamNetworks: [127.0.0.0/8]'],
    },
  });
  gateway = await startGateway(config);
});

afterAll(async () => {
  expect(await gateway.stop()).toBe(0);
  https.closeAllConnections();
  http.closeAllConnections();
  await new Promise((resolve) => https.close(resolve));
  await new Promise((resolve) => http.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('policy changes reach open connections', () => {
  it('an open TLS connection to a name that becomes blocked is reset within 100 ms of the 2xx; another name stays usable', async () => {
    const doomed = await openTls('cut-tls.test');
    const kept = await openTls('keep-tls.test');
    const before = metricValue(await scrape(gateway.adminUrl), 'portcullis_proxy_connections_total', 'listener="tls",result="policy-cut"');
    const acknowledged = await block('cut-tls.test');
    await Promise.race([doomed.closed, sleep(1_000)]);
    expect(doomed.closedAt(), 'the blocked connection is still open').not.toBeNull();
    expect(doomed.closedAt()! - acknowledged).toBeLessThan(CUT_WITHIN_MS);
    expect(doomed.error()).toBe('ECONNRESET');
    kept.socket.write('GET / HTTP/1.1\r\nHost: keep-tls.test\r\n\r\n');
    await until(() => responses(kept.text()) === 2, 'second response on the untouched connection');
    expect(kept.closedAt()).toBeNull();
    kept.socket.destroy();
    const after = metricValue(await scrape(gateway.adminUrl), 'portcullis_proxy_connections_total', 'listener="tls",result="policy-cut"');
    expect(after - before).toBe(1);
  });

  it('an idle HTTP keep-alive connection to a name that becomes blocked is closed within 100 ms; another name stays usable', async () => {
    const doomed = await openHttp('cut-http.test');
    const kept = await openHttp('keep-http.test');
    const acknowledged = await block('cut-http.test');
    await Promise.race([doomed.closed, sleep(1_000)]);
    expect(doomed.closedAt(), 'the blocked connection is still open').not.toBeNull();
    expect(doomed.closedAt()! - acknowledged).toBeLessThan(CUT_WITHIN_MS);
    kept.socket.write('GET / HTTP/1.1\r\nHost: keep-http.test\r\n\r\n');
    await until(() => responses(kept.text()) === 2, 'second response on the untouched connection');
    expect(kept.closedAt()).toBeNull();
    kept.socket.destroy();
  });

  it('an HTTP connection with a response in flight gets that response whole, then is closed', async () => {
    const socket = connect(gateway.httpPort, '127.0.0.1');
    const watched = watch(socket);
    socket.write('GET /slow HTTP/1.1\r\nHost: cut-slow.test\r\n\r\n');
    await sleep(50);
    await block('cut-slow.test');
    expect(watched.closedAt(), 'closed before its answer came').toBeNull();
    await until(() => watched.text().endsWith('ok\n'), 'the response in flight');
    const answered = performance.now();
    await Promise.race([watched.closed, sleep(1_000)]);
    expect(watched.closedAt(), 'still open after its last answer').not.toBeNull();
    expect(watched.closedAt()! - answered).toBeLessThan(CUT_WITHIN_MS);
    expect((await api(gateway.adminUrl, 'DELETE', `/v1/rules/${lastRuleId}`)).status).toBe(204);
  });

  it('an HTTP connection with a response in flight gets that response whole, then a further request gets 451 and the connection closes', async () => {
    const socket = connect(gateway.httpPort, '127.0.0.1');
    const watched = watch(socket);
    socket.write('GET /slow HTTP/1.1\r\nHost: cut-slow.test\r\n\r\n');
    await sleep(50);
    const seenBefore = seen.length;
    await block('cut-slow.test');
    // Still open: its answer is on the way.
    expect(watched.closedAt()).toBeNull();
    socket.write('GET /after HTTP/1.1\r\nHost: cut-slow.test\r\n\r\n');
    await watched.closed;
    const text = watched.text();
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok\nHTTP\/1\.1 451 /);
    expect(seen.slice(seenBefore).map((s) => s.url)).not.toContain('/after');
  });

  it('a CONNECT tunnel to a host that becomes blocked is reset within 100 ms', async () => {
    const raw = connect(gateway.httpPort, '127.0.0.1');
    const httpsPort = (https.address() as AddressInfo).port;
    raw.write(`CONNECT cut-connect.test:${httpsPort} HTTP/1.1\r\nHost: cut-connect.test:${httpsPort}\r\n\r\n`);
    await new Promise<void>((resolve) => raw.once('data', () => resolve()));
    const socket = tlsConnect({ socket: raw, servername: 'cut-connect.test', rejectUnauthorized: false });
    const watched = watch(socket);
    await new Promise<void>((resolve) => socket.once('secureConnect', resolve));
    socket.write('GET / HTTP/1.1\r\nHost: cut-connect.test\r\n\r\n');
    await until(() => watched.text().includes('ok\n'), 'response through the tunnel');
    const acknowledged = await block('cut-connect.test');
    await Promise.race([watched.closed, sleep(1_000)]);
    expect(watched.closedAt(), 'the blocked tunnel is still open').not.toBeNull();
    expect(watched.closedAt()! - acknowledged).toBeLessThan(CUT_WITHIN_MS);
  });

  it('nothing is left counted open afterwards', async () => {
    const open = async (): Promise<number> => {
      const text = await scrape(gateway.adminUrl);
      return metricValue(text, 'portcullis_proxy_active_connections', 'listener="tls"') + metricValue(text, 'portcullis_proxy_active_connections', 'listener="http"');
    };
    const started = Date.now();
    while ((await open()) !== 0 && Date.now() - started < 2_000) await sleep(20);
    expect(await open()).toBe(0);
  });
});

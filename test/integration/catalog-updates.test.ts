import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundledRelease, type CatalogRelease } from '../../src/catalog/index.js';
import { ed25519Keys, signedBundle, withDomain } from '../support/catalog-bundles.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { metricValue, scrape } from '../support/gateway-observer.js';
import { api, freePort, resolveA, runCli, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { makeTestPki, type TestPki } from '../support/test-pki.js';

/**
 * Signed catalog updates end to end: a real gateway process fetching bundles from a local HTTPS
 * server (its own test CA), DNS answering real queries before and after, refusals that keep the
 * last good catalog, a restart with the server gone, and a Redis fleet converging.
 */

const NOERROR = 0;
const NXDOMAIN = 3;
const ANSWER = '192.0.2.50';
/** Names only a catalog update lists (as LINE's), answered by the upstream until then. */
const FIX_V1 = 'chat-v2.catalog-fix.example';
const FIX_V2 = 'chat-v3.catalog-fix.example';
const REFRESH_MS = 5_000;

interface Served {
  /** The body served, or a failure mode. */
  body: string | null;
  /** Send only this many bytes of the body: with its full content-length (the transfer breaks), or chunked (it just ends). */
  truncateTo: { bytes: number; framing: 'content-length' | 'chunked' } | null;
}

let dir = '';
let pki: TestPki;
let upstream: FakeUpstream;
let server: Server;
let serverPort = 0;
let bundled: CatalogRelease;
const served: Served = { body: null, truncateTo: null };
/** If-None-Match of each request the server saw ('' when absent). */
const conditionals: string[] = [];
const publisher = ed25519Keys();
const attacker = ed25519Keys();

function etagOf(body: string): string {
  return `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
}

function startBundleServer(port = 0): Promise<number> {
  server = createServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }, (req, res) => {
    conditionals.push(typeof req.headers['if-none-match'] === 'string' ? req.headers['if-none-match'] : '');
    const body = served.body;
    if (body === null) {
      res.writeHead(404).end();
      return;
    }
    const etag = etagOf(body);
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return;
    }
    const cut = served.truncateTo;
    if (cut === null) {
      res.writeHead(200, { 'content-type': 'application/json', etag, 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    if (cut.framing === 'content-length') {
      res.writeHead(200, { 'content-type': 'application/json', etag, 'content-length': Buffer.byteLength(body) });
      res.write(body.slice(0, cut.bytes), () => res.socket?.destroy());
    } else {
      res.writeHead(200, { 'content-type': 'application/json', etag });
      res.end(body.slice(0, cut.bytes));
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function stopBundleServer(): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const rcode = async (gateway: GatewayProcess, name: string): Promise<number | undefined> => (await resolveA(gateway.dnsPort, name))?.rcode;

interface Status {
  version: number;
  origin: string;
  receivedVia: string | null;
  isExpired: boolean;
  updates: { lastResult: string | null; lastError: string | null } | null;
}
const catalogOf = async (gateway: GatewayProcess): Promise<Status> => (await api(gateway.adminUrl, 'GET', '/v1/catalog')).body as Status;
const refresh = async (gateway: GatewayProcess): Promise<{ result: string; catalog: Status }> => {
  const response = await api(gateway.adminUrl, 'POST', '/v1/catalog/refresh');
  expect(response.status).toBe(200);
  return response.body as { result: string; catalog: Status };
};

async function gatewayConfig(home: string, url: string): Promise<string> {
  await mkdir(home, { recursive: true });
  await writeFile(join(home, 'catalog.pub'), publisher.publicPem);
  return writeGatewayConfig(home, {
    upstream: upstream.target,
    extra: [
      'policy:',
      `  catalog: { url: "${url}", publicKey: catalog.pub, refresh: ${REFRESH_MS / 1000}s, ca: ${pki.ca} }`,
    ],
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-catalog-'));
  pki = await makeTestPki(dir, ['127.0.0.1']);
  bundled = await loadBundledRelease();
  upstream = await startFakeUpstream(Object.fromEntries([FIX_V1, FIX_V2, 'legy-jp.line-apps.com'].map((name) => [name, [{ type: 'A' as const, value: ANSWER }]])));
  serverPort = await startBundleServer();
});

afterAll(async () => {
  await stopBundleServer().catch(() => undefined);
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe('signed catalog updates from an HTTPS source', () => {
  let gateway: GatewayProcess;
  let config = '';
  const v1 = (): number => bundled.version + 1;

  afterAll(async () => {
    await gateway.stop('SIGKILL');
  });

  it('starts on the bundled catalog while the source has no bundle, and says why in /v1/catalog, /readyz and the metrics', async () => {
    config = await gatewayConfig(join(dir, 'solo'), `https://127.0.0.1:${serverPort}/catalog.json`);
    gateway = await startGateway(config, ['--dns.workers=2']);
    await waitFor(async () => (await catalogOf(gateway)).updates?.lastResult === 'fetch-failed', 5_000, 'the first download to fail');
    const status = await catalogOf(gateway);
    expect(status).toMatchObject({ version: bundled.version, origin: 'bundled', receivedVia: null });
    expect(status.updates?.lastError).toContain('HTTP 404');
    const ready = await fetch(`${gateway.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { catalog: unknown }).catalog).toMatchObject({ version: bundled.version, origin: 'bundled', lastResult: 'fetch-failed' });
    expect(await rcode(gateway, FIX_V1)).toBe(NOERROR);
    expect(await rcode(gateway, 'legy-jp.line-apps.com')).toBe(NXDOMAIN);
    const metrics = await scrape(gateway.adminUrl);
    expect(metricValue(metrics, 'portcullis_catalog_version')).toBe(bundled.version);
    expect(metricValue(metrics, 'portcullis_catalog_updates_total', 'result="fetch-failed"')).toBeGreaterThanOrEqual(1);
  });

  it('applies a newer signed bundle within one refresh: DNS (every worker thread) blocks what it adds', async () => {
    served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V1), { version: v1(), key: publisher.privateKey });
    const published = performance.now();
    // Queries from fresh sockets: SO_REUSEPORT spreads them over both DNS threads. Every 50 ms,
    // well under the per-client rate limit.
    const everyThreadBlocks = async (): Promise<boolean> => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return (await Promise.all(Array.from({ length: 8 }, () => rcode(gateway, FIX_V1)))).every((r) => r === NXDOMAIN);
    };
    await waitFor(everyThreadBlocks, REFRESH_MS * 1.1 + 2_000, 'DNS to block the name the bundle adds');
    const tookMs = performance.now() - published;
    console.log(`catalog bundle published -> DNS blocks it: ${tookMs.toFixed(0)} ms (refresh ${REFRESH_MS} ms)`);
    expect(tookMs).toBeLessThan(REFRESH_MS * 1.1 + 1_000);
    expect(await catalogOf(gateway)).toMatchObject({ version: v1(), origin: 'signed', receivedVia: 'download', isExpired: false, updates: { lastResult: 'applied', lastError: null } });
    expect(gateway.logs.some((l) => l.msg === 'catalog bundle in force' && l.version === v1())).toBe(true);
    const metrics = await scrape(gateway.adminUrl);
    expect(metricValue(metrics, 'portcullis_catalog_version')).toBe(v1());
    expect(metricValue(metrics, 'portcullis_catalog_updates_total', 'result="applied"')).toBe(1);
    expect(metricValue(metrics, 'portcullis_catalog_expiry_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000);
    // The bundle's apps behave as the bundled catalog's did.
    expect(await rcode(gateway, 'legy-jp.line-apps.com')).toBe(NXDOMAIN);
    const check = runCli(['check', FIX_V1, '--config', config]);
    expect(check.code).toBe(3);
  });

  it('asks again with the ETag it got: an unchanged bundle costs a 304', async () => {
    const before = conditionals.length;
    const result = await refresh(gateway);
    expect(result.result).toBe('unchanged');
    expect(conditionals.slice(before)).toEqual([etagOf(served.body!)]);
  });

  const refusals: [string, () => void, string][] = [
    ['signed with another key', () => (served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() + 1, key: attacker.privateKey })), 'bad-signature'],
    [
      'changed after signing',
      () => {
        const envelope = JSON.parse(signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() + 1, key: publisher.privateKey })) as { payload: string };
        const payload = Buffer.from(envelope.payload, 'base64').toString('utf8').replace(FIX_V2, 'chat-v4.catalog-fix.example');
        served.body = JSON.stringify({ ...envelope, payload: Buffer.from(payload).toString('base64') });
      },
      'bad-signature',
    ],
    ['older than the one in force (a rollback)', () => (served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() - 1, key: publisher.privateKey })), 'stale'],
    ['the same version with other contents (a replay)', () => (served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1(), key: publisher.privateKey })), 'stale'],
    [
      'expired',
      () => (served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() + 2, key: publisher.privateKey, issuedMs: Date.now() - 40 * 86_400_000, expiresMs: Date.now() - 86_400_000 })),
      'expired',
    ],
    ['with an entry that has no source', () => (served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2, null), { version: v1() + 3, key: publisher.privateKey })), 'invalid'],
    [
      'truncated (the connection breaks before content-length)',
      () => {
        served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() + 4, key: publisher.privateKey });
        served.truncateTo = { bytes: Math.floor(served.body.length / 2), framing: 'content-length' };
      },
      'fetch-failed',
    ],
    [
      'truncated (a chunked body that just ends)',
      () => {
        served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: v1() + 5, key: publisher.privateKey });
        served.truncateTo = { bytes: Math.floor(served.body.length / 2), framing: 'chunked' };
      },
      'malformed',
    ],
  ];

  it.each(refusals)('refuses a bundle %s and keeps the last good catalog', async (_what, serve, reason) => {
    served.truncateTo = null;
    serve();
    const metricsBefore = await scrape(gateway.adminUrl);
    const result = await refresh(gateway);
    expect(result.result).toBe(reason);
    expect(result.catalog).toMatchObject({ version: v1(), origin: 'signed', updates: { lastResult: reason } });
    expect(result.catalog.updates?.lastError).toBeTruthy();
    const ready = (await (await fetch(`${gateway.adminUrl}/readyz`)).json()) as { ready: boolean; catalog: { version: number; lastResult: string; lastError: string } };
    expect(ready).toMatchObject({ ready: true, catalog: { version: v1(), lastResult: reason } });
    expect(await rcode(gateway, FIX_V1)).toBe(NXDOMAIN);
    expect(await rcode(gateway, FIX_V2)).toBe(NOERROR);
    const counted = (text: string): number => metricValue(text, 'portcullis_catalog_updates_total', `result="${reason}"`);
    expect(counted(await scrape(gateway.adminUrl)) - counted(metricsBefore)).toBe(1);
    expect(gateway.logs.some((l) => l.component === 'catalog' && l.result === reason && typeof l.msg === 'string' && l.msg.includes(`version ${v1()} stays in force`))).toBe(true);
  });

  it('keeps the accepted bundle across a restart with the source down; portcullis apps says which catalog is in force', async () => {
    served.truncateTo = null;
    expect(await gateway.stop()).toBe(0);
    await stopBundleServer();
    gateway = await startGateway(config, ['--dns.workers=2']);
    expect(await catalogOf(gateway)).toMatchObject({ version: v1(), origin: 'signed', receivedVia: 'download' });
    expect(await rcode(gateway, FIX_V1)).toBe(NXDOMAIN);
    await waitFor(async () => (await catalogOf(gateway)).updates?.lastResult === 'fetch-failed', 5_000, 'the download to fail');
    expect(await rcode(gateway, FIX_V1)).toBe(NXDOMAIN);
    const status = (await catalogOf(gateway)) as Status & { receivedAt: string; expires: string };
    const apps = runCli(['apps', '--config', config]);
    expect(apps.code).toBe(0);
    expect(apps.stdout.split('\n')[0]).toBe(`catalog version ${v1()}, signed bundle from https://127.0.0.1:${serverPort}/catalog.json (downloaded ${status.receivedAt}), expires ${status.expires}`);
    await startBundleServer(serverPort);
  });

  it('validate refuses what start could not use: a missing key file, a key that is not Ed25519, an http:// URL', async () => {
    const home = join(dir, 'invalid');
    await mkdir(home, { recursive: true });
    await writeFile(join(home, 'rsa.pem'), await readFile(pki.ca, 'utf8'));
    const cases: [string, RegExp][] = [
      ['{ url: "https://127.0.0.1:1/c.json", publicKey: missing.pub }', /portcullis\.yaml:\d+ \(policy\.catalog\.publicKey\): .*cannot read .*missing\.pub/],
      ['{ url: "https://127.0.0.1:1/c.json", publicKey: rsa.pem }', /\(policy\.catalog\.publicKey\): .*not usable/],
      ['{ url: "http://127.0.0.1:1/c.json", publicKey: rsa.pem }', /\(policy\.catalog\.url\)/],
    ];
    for (const [line, message] of cases) {
      const file = await writeGatewayConfig(home, { upstream: upstream.target, extra: ['policy:', `  catalog: ${line}`] });
      const validate = runCli(['validate', '--config', file]);
      expect(validate.code, line).toBe(1);
      expect(validate.stderr, line).toMatch(message);
      const start = runCli(['start', '--config', file]);
      expect(start.code, line).toBe(1);
    }
  });
});

describe('a fleet converges on the highest verified catalog', () => {
  let redis: ChildProcess | null = null;
  const fleet: GatewayProcess[] = [];

  function redisPing(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('error', () => resolve(false));
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.once('data', (data) => {
        socket.destroy();
        resolve(data.toString().startsWith('+PONG'));
      });
    });
  }

  afterAll(async () => {
    await Promise.all(fleet.map((g) => g.stop('SIGKILL')));
    redis?.kill('SIGKILL');
  });

  it('a gateway cut off from the source takes the bundle another gateway verified, through Redis, and checks it itself', async () => {
    const redisPort = await freePort();
    redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor(() => redisPing(redisPort), 10_000, 'redis-server');
    const redisLine = [`store: { path: STORE, redis: "redis://127.0.0.1:${redisPort}/0" }`];
    served.truncateTo = null;
    served.body = null;
    const deadUrl = `https://127.0.0.1:${await freePort()}/catalog.json`;
    for (const [name, url] of [['a', `https://127.0.0.1:${serverPort}/catalog.json`], ['b', deadUrl]] as const) {
      const home = join(dir, `fleet-${name}`);
      const file = await gatewayConfig(home, url);
      const text = (await readFile(file, 'utf8')).replace(/store:\n {2}path: .*\n/, '') + redisLine[0]!.replace('STORE', join(home, 'data')) + '\n';
      await writeFile(file, text);
      fleet.push(await startGateway(file));
    }
    const [a, b] = fleet as [GatewayProcess, GatewayProcess];
    expect(await rcode(b, FIX_V2)).toBe(NOERROR);
    served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V2), { version: bundled.version + 7, key: publisher.privateKey });
    expect((await refresh(a)).result).toBe('applied');
    const tookMs = await waitFor(async () => (await rcode(b, FIX_V2)) === NXDOMAIN, 2_000, 'B to block the name A\'s bundle adds');
    console.log(`catalog bundle applied on A -> DNS on B blocks it: ${tookMs.toFixed(0)} ms`);
    expect(await catalogOf(b)).toMatchObject({ version: bundled.version + 7, origin: 'signed', receivedVia: 'fleet' });
    // An older bundle from the source is refused by A and changes nothing in the fleet.
    served.body = signedBundle(withDomain(bundled.documents, 'line', FIX_V1), { version: bundled.version + 6, key: publisher.privateKey });
    expect((await refresh(a)).result).toBe('stale');
    expect((await catalogOf(b)).version).toBe(bundled.version + 7);
    // A gateway that joins later, also cut off, starts on the fleet's bundle.
    const home = join(dir, 'fleet-c');
    const file = await gatewayConfig(home, deadUrl);
    await writeFile(file, (await readFile(file, 'utf8')).replace(/store:\n {2}path: .*\n/, '') + redisLine[0]!.replace('STORE', join(home, 'data')) + '\n');
    const c = await startGateway(file);
    fleet.push(c);
    await waitFor(async () => (await rcode(c, FIX_V2)) === NXDOMAIN, 2_000, 'C to take the fleet\'s bundle');
    expect(await catalogOf(c)).toMatchObject({ version: bundled.version + 7, receivedVia: 'fleet' });
  });
});

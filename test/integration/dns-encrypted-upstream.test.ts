import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDohListener } from '../../src/dns/doh-listener.js';
import { UpstreamPool, type UpstreamResult } from '../../src/dns/upstream.js';
import type { UpstreamQuestion } from '../../src/dns/upstream-types.js';
import { silentLogger } from '../../src/observability/logger.js';
import { digOne, udpExchange } from '../support/dns-clients.js';
import { decode, wireName } from '../support/dns-message.js';
import { metricSum, scrape } from '../support/gateway-observer.js';
import { startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { makeTestPki, type TestPki } from '../support/test-pki.js';
import { startUnbound, type Unbound } from '../support/unbound.js';
import { rejection } from '../support/rejection.js';

/**
 * Encrypted upstreams against real servers: unbound serving DoT with a certificate from a
 * private CA, and the gateway's own DoH listener as a DoH upstream. The pool is driven directly
 * for connection reuse, pipelining, failover and certificate checks; spawned gateways show the
 * whole path with dig.
 */

const BULK = 300;
const RECORDS = ['www.example.test. 300 IN A 192.0.2.7', ...Array.from({ length: BULK }, (_, i) => `n${i}.example.test. 300 IN A 192.0.2.${(i % 250) + 1}`)];

let dir: string;
let pki: TestPki;
let caPem: string;
let unbound: Unbound;
const pools: UpstreamPool[] = [];
const closers: (() => Promise<unknown>)[] = [];

function question(name: string): UpstreamQuestion {
  return { nameWire: wireName(name), name, qtype: 1, qclass: 1, dnssecOk: false, checkingDisabled: false };
}

function pool(upstreams: string[], options: { ca?: string | null; results?: UpstreamResult[] } = {}): UpstreamPool {
  const p = new UpstreamPool(upstreams, { logger: silentLogger, ca: options.ca === undefined ? caPem : options.ca, onResult: (r) => options.results?.push(r) });
  pools.push(p);
  return p;
}


function addresses(message: Buffer): string[] {
  return decode(message).answers.map((a) => String(a.value));
}

/** A TCP relay in front of a server that counts the connections made through it. */
async function countingRelay(port: number): Promise<{ port: number; connections: () => number; server: Server }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    count++;
    const upstream = connect(port, '127.0.0.1');
    for (const [s, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        other.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as { port: number }).port, connections: () => count, server };
}

/** The gateway's DoH listener in-process, answering through unbound over UDP; it records each query. */
async function dohServer(): Promise<{ port: number; queries: Buffer[] }> {
  const queries: Buffer[] = [];
  const server = createDohListener(
    (query, client, reply) => {
      queries.push(Buffer.from(query));
      void udpExchange(unbound.plainPort, query).then((answer) => reply(answer, client));
    },
    { path: '/dns-query', cert: await readFile(pki.cert), key: await readFile(pki.key), limits: { idleTimeoutMs: 5_000, maxConnections: 10, maxPipelined: 100 } },
    silentLogger,
  );
  return { port: await listen(server), queries };
}

async function listen(server: Http2SecureServer): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as { port: number }).port;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcl-encrypted-upstream-'));
  pki = await makeTestPki(dir, ['dns.test', '127.0.0.1']);
  caPem = await readFile(pki.ca, 'utf8');
  unbound = await startUnbound(dir, { cert: pki.cert, key: pki.key, zone: 'example.test.', records: RECORDS, tcpIdleTimeoutMs: 1_000 });
}, 30_000);

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
  await Promise.all(closers.splice(0).map((c) => c()));
});

afterAll(async () => {
  await unbound.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('DoT upstream (unbound)', () => {
  it('resolves over TLS, the certificate checked against the name after #', async () => {
    const results: UpstreamResult[] = [];
    const p = pool([`tls://127.0.0.1:${unbound.tlsPort}#dns.test`], { results });
    const answer = await p.query(question('www.example.test'));
    expect(answer.transport).toBe('tls');
    expect(addresses(answer.message)).toEqual(['192.0.2.7']);
    expect(results.map((r) => r.outcome)).toEqual(['ok']);
    expect(p.health()[0]).toMatchObject({ healthy: true, consecutiveFailures: 0 });
  });

  it('a certificate for another name is refused: kind tls, never an answer', async () => {
    const results: UpstreamResult[] = [];
    const p = pool([`tls://127.0.0.1:${unbound.tlsPort}#wrong.test`], { results });
    const err = await rejection(p.query(question('www.example.test')));
    expect(err.details).toMatchObject({ kind: 'tls' });
    expect(results.every((r) => r.outcome === 'tls')).toBe(true);
  });

  it('a certificate from a CA not trusted (no dns.upstreamCa) is refused', async () => {
    const p = pool([`tls://127.0.0.1:${unbound.tlsPort}#dns.test`], { ca: null });
    expect((await rejection(p.query(question('www.example.test')))).details).toMatchObject({ kind: 'tls' });
  });

  it('without #name the certificate must name the IP', async () => {
    const p = pool([`tls://127.0.0.1:${unbound.tlsPort}`]);
    expect(addresses((await p.query(question('www.example.test'))).message)).toEqual(['192.0.2.7']);
  });

  it(`${BULK} questions at once share one connection (pipelined), and the next ones reuse it`, async () => {
    const relay = await countingRelay(unbound.tlsPort);
    const p = pool([`tls://127.0.0.1:${relay.port}#dns.test`]);
    const answers = await Promise.all(Array.from({ length: BULK }, (_, i) => p.query(question(`n${i}.example.test`))));
    expect(answers.map((a) => addresses(a.message))).toEqual(Array.from({ length: BULK }, (_, i) => [`192.0.2.${(i % 250) + 1}`]));
    await p.query(question('www.example.test'));
    expect(relay.connections()).toBe(1);
  });

  it('after the server closes an idle connection, the next question opens a new one without a failure', async () => {
    const relay = await countingRelay(unbound.tlsPort);
    const results: UpstreamResult[] = [];
    const p = pool([`tls://127.0.0.1:${relay.port}#dns.test`], { results });
    await p.query(question('n1.example.test'));
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // unbound's tcp-idle-timeout is 1 s
    expect(addresses((await p.query(question('n2.example.test'))).message)).toEqual(['192.0.2.3']);
    expect(relay.connections()).toBe(2);
    expect(results.map((r) => r.outcome)).toEqual(['ok', 'ok']);
  });

  it('fails over from a DoT upstream that refuses connections to one that answers', async () => {
    const dead = await countingRelay(1); // relays to a closed port: every connection is reset
    const p = pool([`tls://127.0.0.1:${dead.port}#dns.test`, `tls://127.0.0.1:${unbound.tlsPort}#dns.test`]);
    for (let i = 0; i < 5; i++) expect(addresses((await p.query(question(`n${i}.example.test`))).message)).toHaveLength(1);
    const [down, up] = p.health();
    expect(down?.consecutiveFailures).toBeGreaterThan(0);
    expect(up?.consecutiveFailures).toBe(0);
    expect(dead.connections()).toBeGreaterThan(0);
  });

  it('queries are padded to a multiple of 128 bytes (RFC 8467) with a random-case name (0x20)', async () => {
    const doh = await dohServer();
    const p = pool([`https://127.0.0.1:${doh.port}/dns-query#dns.test`]);
    await p.query(question('www.example.test'));
    const sent = doh.queries[0]!;
    expect(sent.length % 128).toBe(0);
    expect(decode(sent).opt?.options.map((o) => o.code)).toEqual([12]);
  });
});

describe('DoH upstream', () => {
  it('resolves over HTTP/2 through the gateway’s own DoH listener, one connection for many questions', async () => {
    const doh = await dohServer();
    const results: UpstreamResult[] = [];
    const p = pool([`https://127.0.0.1:${doh.port}/dns-query#dns.test`], { results });
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => p.query(question(`n${i}.example.test`))));
    expect(answers.every((a) => a.transport === 'https')).toBe(true);
    expect(answers.map((a) => addresses(a.message)[0])).toEqual(Array.from({ length: 50 }, (_, i) => `192.0.2.${i + 1}`));
    expect(results.every((r) => r.outcome === 'ok')).toBe(true);
  });

  it('a certificate name mismatch is refused (kind tls)', async () => {
    const doh = await dohServer();
    const p = pool([`https://127.0.0.1:${doh.port}/dns-query#wrong.test`]);
    expect((await rejection(p.query(question('www.example.test')))).details).toMatchObject({ kind: 'tls' });
    expect(doh.queries).toEqual([]);
  });

  it('an HTTP error or a body that is not a DNS message fails the attempt, and the next upstream answers', async () => {
    const statuses: [number, string][] = [
      [500, 'application/dns-message'],
      [200, 'text/html'],
    ];
    const bad: string[] = [];
    for (const [status, type] of statuses) {
      const server = createSecureServer({ cert: await readFile(pki.cert), key: await readFile(pki.key) }, (_req, res) => {
        res.writeHead(status, { 'content-type': type }).end(Buffer.alloc(40));
      });
      bad.push(`https://127.0.0.1:${await listen(server)}/dns-query#dns.test`);
    }
    for (const upstream of bad) {
      const results: UpstreamResult[] = [];
      const p = pool([upstream, `tls://127.0.0.1:${unbound.tlsPort}#dns.test`], { results });
      for (let i = 0; i < 4; i++) expect(addresses((await p.query(question(`n${i}.example.test`))).message)).toHaveLength(1);
      expect(results.filter((r) => r.upstream === upstream).map((r) => r.outcome)).toContain(upstream === bad[0] ? 'network' : 'malformed');
    }
  });

  it('a silent DoH upstream times out within the deadline; the query fails with kind timeout', async () => {
    const server = createSecureServer({ cert: await readFile(pki.cert), key: await readFile(pki.key) }, () => undefined);
    const p = pool([`https://127.0.0.1:${await listen(server)}/dns-query#dns.test`]);
    const started = performance.now();
    expect((await rejection(p.query(question('www.example.test')))).details).toMatchObject({ kind: 'timeout' });
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('through the gateway (dig)', () => {
  const gateways: GatewayProcess[] = [];
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
  });

  async function gateway(name: string, upstream: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
    const home = await mkdtemp(join(dir, `${name}-`));
    const config = await writeGatewayConfig(home, { upstream });
    const g = await startGateway(config, [], 15_000, [], { PORTCULLIS_DNS_UPSTREAM_CA: pki.ca, ...env });
    gateways.push(g);
    return g;
  }

  it('a DoT upstream and a DoH upstream (another gateway’s DoH listener) each resolve a name; a name mismatch gives SERVFAIL with EDE 23', async () => {
    const inner = await gateway('inner', `127.0.0.1:${unbound.plainPort}`, { PORTCULLIS_DNS_TLS_CERT: pki.cert, PORTCULLIS_DNS_TLS_KEY: pki.key, PORTCULLIS_DNS_DOH_LISTEN: '127.0.0.1:0' });
    const dohPort = (inner.logs.find((l) => l.msg === 'dns listening')?.doh as { port: number }).port;
    const [overDot, overDoh, mismatched] = await Promise.all([
      gateway('dot', `tls://127.0.0.1:${unbound.tlsPort}#dns.test`),
      gateway('doh', `https://127.0.0.1:${dohPort}/dns-query#dns.test`),
      gateway('mismatch', `tls://127.0.0.1:${unbound.tlsPort}#wrong.test`),
    ]);
    for (const g of [overDot, overDoh]) {
      const answer = await digOne(g.dnsPort, ['www.example.test', 'A']);
      expect(answer.status).toBe('NOERROR');
      expect(answer.answers.map((a) => a.data)).toEqual(['192.0.2.7']);
      const blocked = await digOne(g.dnsPort, ['talk-pilsner.kakao.com', 'A']);
      expect(blocked).toMatchObject({ status: 'NXDOMAIN', ede: { code: 15 } });
    }
    const failed = await digOne(mismatched.dnsPort, ['www.example.test', 'A']);
    expect(failed.status).toBe('SERVFAIL');
    expect(failed.ede?.code).toBe(23);
    const metrics = await scrape(mismatched.adminUrl);
    expect(metricSum(metrics, 'portcullis_upstream_errors_total', 'kind="tls"')).toBeGreaterThan(0);
  });
});

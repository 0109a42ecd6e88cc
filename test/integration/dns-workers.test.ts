import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { api, resolveA, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

/**
 * dns.workers: 3 threads answer UDP on one port (SO_REUSEPORT), each with its own policy
 * engine. Every query comes from a fresh socket (a new source port), so the kernel spreads
 * them over the threads; every one of them must follow each policy change.
 */
const LINE_NAME = 'legy-jp.line-apps.com';
const ALLOWED = '203.0.113.9';
const NXDOMAIN = 3;
const QUERIES = 150;

let dir = '';
let upstream: FakeUpstream;
let gateway: GatewayProcess;

async function answers(name: string): Promise<Map<string, number>> {
  const results = await Promise.all(Array.from({ length: QUERIES }, () => resolveA(gateway.dnsPort, name)));
  const counts = new Map<string, number>();
  for (const r of results) {
    const key = r === null ? 'no answer' : r.rcode === NXDOMAIN ? 'NXDOMAIN' : (r.addresses[0] ?? `rcode ${r.rcode}`);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

async function metric(line: string): Promise<number> {
  const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found === undefined ? Number.NaN : Number(found.split(' ').pop());
}

describe('dns.workers: UDP served by several threads', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-dns-workers-'));
    upstream = await startFakeUpstream({ [LINE_NAME]: [{ type: 'A', value: ALLOWED }], 'www.example.org': [{ type: 'A', value: ALLOWED }], 'listed.example.net': [{ type: 'A', value: ALLOWED }] });
    await writeFile(join(dir, 'extra.txt'), 'nothing.example\n');
    const config = await writeGatewayConfig(dir, { upstream: upstream.target, extra: ['policy:', `  lists: [${join(dir, 'extra.txt')}]`] });
    gateway = await startGateway(config, ['--dns.workers=3', '--dns.rateLimit.perSecond=0']);
  });

  afterAll(async () => {
    await gateway.stop('SIGKILL');
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts the extra threads on the same port, and every thread answers', async () => {
    expect(gateway.logs.filter((l) => l.msg === 'dns worker listening').map((l) => l.port)).toEqual([gateway.dnsPort, gateway.dnsPort]);
    expect(await answers('talk-pilsner.kakao.com')).toEqual(new Map([['NXDOMAIN', QUERIES]]));
    expect(await answers('www.example.org')).toEqual(new Map([[ALLOWED, QUERIES]]));
    // Workers report once a second: all queries counted, and spread over the three threads.
    await waitFor(async () => (await metric('portcullis_dns_queries_total{protocol="udp",result="blocked"}')) === QUERIES, 5_000, 'the workers\' counts');
    const perThread = await Promise.all(['0', '1', '2'].map((w) => metric(`portcullis_dns_worker_queries_total{worker="${w}"}`)));
    expect(perThread.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2 * QUERIES);
    expect(perThread.every((n) => n > 0)).toBe(true);
  });

  it('an app switched off and on through the API is followed by every thread', async () => {
    expect((await api(gateway.adminUrl, 'PATCH', '/v1/apps/line', { enabled: false })).status).toBe(200);
    await waitFor(async () => (await answers(LINE_NAME)).get(ALLOWED) === QUERIES, 2_000, 'every thread to let LINE through');
    expect((await api(gateway.adminUrl, 'PATCH', '/v1/apps/line', { enabled: true })).status).toBe(200);
    await waitFor(async () => (await answers(LINE_NAME)).get('NXDOMAIN') === QUERIES, 2_000, 'every thread to block LINE again');
  });

  it('an admin rule reaches every thread, and blocks are counted by app from all of them', async () => {
    const before = await metric('portcullis_blocked_total{app="custom",layer="dns"}');
    const added = await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'example.org', action: 'block' });
    expect(added.status).toBe(201);
    await waitFor(async () => (await answers('www.example.org')).get('NXDOMAIN') === QUERIES, 2_000, 'every thread to block the rule');
    await waitFor(async () => (await metric('portcullis_blocked_total{app="custom",layer="dns"}')) >= before + QUERIES, 3_000, 'blocks from every thread');
  });

  it('a list file edited on disk is in force in every thread', async () => {
    expect((await answers('listed.example.net')).get(ALLOWED)).toBe(QUERIES);
    await writeFile(join(dir, 'extra.txt'), 'nothing.example\nlisted.example.net\n');
    await waitFor(async () => (await answers('listed.example.net')).get('NXDOMAIN') === QUERIES, 3_000, 'every thread to block the listed name');
  });

  it('stops cleanly on SIGTERM', async () => {
    expect(await gateway.stop('SIGTERM')).toBe(0);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { api, freePort, resolveA, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

const NXDOMAIN = 3;
const NOERROR = 0;
const LINE_NAME = 'legy-jp.line-apps.com';
const ANSWER = '192.0.2.20';

let dir = '';
let upstream: FakeUpstream;
let redisPort = 0;
let redis: ChildProcess | null = null;
let backend: HttpServer;
const gateways: { a?: GatewayProcess; b?: GatewayProcess } = {};
const configs = { a: '', b: '' };

function redisPing(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(redisPort, '127.0.0.1');
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
  });
}

/** A real redis-server without persistence: killing it loses everything, as a wiped Redis would. */
async function startRedis(): Promise<void> {
  const child = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  child.once('error', (e) => {
    throw new Error(`redis-server could not start (apt-get install redis-server): ${e.message}`);
  });
  redis = child;
  await waitFor(redisPing, 10_000, 'redis-server to answer PING');
}

async function killRedis(): Promise<void> {
  const child = redis;
  redis = null;
  if (child === null || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function startNode(name: 'a' | 'b'): Promise<GatewayProcess> {
  const gateway = await startGateway(configs[name]);
  gateways[name] = gateway;
  return gateway;
}

const rcodeOf = async (gateway: GatewayProcess, name: string): Promise<number | undefined> => (await resolveA(gateway.dnsPort, name))?.rcode;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-fleet-'));
  upstream = await startFakeUpstream({
    [LINE_NAME]: [{ type: 'A', value: ANSWER }],
    ...Object.fromEntries(['fleet-a.test', 'www.fleet-a.test', 'restart.test', 'outage.test', 'after.test'].map((n) => [n, [{ type: 'A' as const, value: ANSWER }]])),
  });
  redisPort = await freePort();
  await startRedis();
  backend = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-length': 3 });
    res.end('ok\n');
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  for (const name of ['a', 'b'] as const) {
    const home = join(dir, name);
    await mkdir(home, { recursive: true });
    configs[name] = await writeGatewayConfig(home, {
      upstream: upstream.target,
      redis: `redis://127.0.0.1:${redisPort}/0`,
      proxy: { httpUpstreamPort: (backend.address() as AddressInfo).port, lines: ['hosts: { fleet-cut.test: 127.0.0.1 }', 'allowedUpstreamNetworks: [127.0.0.0/8]'] },
    });
  }
  await startNode('a');
  await startNode('b');
});

afterAll(async () => {
  await Promise.all([gateways.a?.stop('SIGKILL'), gateways.b?.stop('SIGKILL')]);
  await killRedis();
  await upstream.close();
  backend.closeAllConnections();
  await new Promise((resolve) => backend.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

describe('fleet sync over Redis', () => {
  it('a rule added on A blocks a real DNS query on B within 1 s; an app switched off on B resolves on A within 1 s', async () => {
    const { a, b } = gateways as Required<typeof gateways>;
    expect(await rcodeOf(b, 'www.fleet-a.test')).toBe(NOERROR);
    const added = await api(a.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'fleet-a.test', action: 'block' });
    expect(added.status).toBe(201);
    const ruleMs = await waitFor(async () => (await rcodeOf(b, 'www.fleet-a.test')) === NXDOMAIN, 1_000, 'the rule on B');

    expect(await rcodeOf(a, LINE_NAME)).toBe(NXDOMAIN);
    expect((await api(b.adminUrl, 'PATCH', '/v1/apps/line', { enabled: false })).status).toBe(200);
    const appMs = await waitFor(async () => (await rcodeOf(a, LINE_NAME)) === NOERROR, 1_000, 'LINE to resolve on A');
    console.log(`propagation across two gateways: rule A->B ${ruleMs.toFixed(1)} ms, app switch B->A ${appMs.toFixed(1)} ms`);
    expect((await api(b.adminUrl, 'PATCH', '/v1/apps/line', { enabled: true })).status).toBe(200);
    await waitFor(async () => (await rcodeOf(a, LINE_NAME)) === NXDOMAIN, 1_000, 'LINE blocked again on A');
  });

  it('a rule added on A closes an open keep-alive HTTP connection through B within 1 s', async () => {
    const { a, b } = gateways as Required<typeof gateways>;
    const socket = connect(b.httpPort, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
    socket.write('GET / HTTP/1.1\r\nHost: fleet-cut.test\r\n\r\n');
    await waitFor(() => Promise.resolve(text.endsWith('ok\n')), 2_000, 'the response through B');
    const added = await api(a.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'fleet-cut.test', action: 'block' });
    const acknowledged = performance.now();
    expect(added.status).toBe(201);
    const closedAt = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(Number.POSITIVE_INFINITY), 2_000))]);
    expect(closedAt - acknowledged).toBeLessThan(1_000);
  });

  it('20 writes on each node at once: all 40 present on both nodes, no lost update', async () => {
    const { a, b } = gateways as Required<typeof gateways>;
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => api(i % 2 === 0 ? a.adminUrl : b.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: `race${i}.test`, action: 'block' })),
    );
    expect(results.map((r) => r.status)).toEqual(Array<number>(40).fill(201));
    const ids = new Set(results.map((r) => (r.body as { id: string }).id));
    expect(ids.size).toBe(40);
    for (const node of [a, b]) {
      await waitFor(async () => {
        const rules = (await api(node.adminUrl, 'GET', '/v1/rules')).body as { value: string }[];
        return rules.filter((r) => r.value.startsWith('race')).length === 40;
      }, 2_000, 'all 40 rules on every node');
    }
  });

  it('a restarted node resyncs: a rule added while it was down is enforced after its start', async () => {
    const { a } = gateways as Required<typeof gateways>;
    expect(await gateways.b!.stop()).toBe(0);
    expect((await api(a.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'restart.test', action: 'block' })).status).toBe(201);
    const b = await startNode('b');
    expect(await rcodeOf(b, 'restart.test')).toBe(NXDOMAIN);
  });

  it('redis killed: both keep enforcing, writes get 503 at once, /readyz says why; back after Redis returns (even empty)', async () => {
    const { a, b } = gateways as Required<typeof gateways>;
    await killRedis();
    for (const node of [a, b]) {
      expect(await rcodeOf(node, 'www.fleet-a.test')).toBe(NXDOMAIN);
      expect(await rcodeOf(node, 'outage.test')).toBe(NOERROR);
    }
    const started = performance.now();
    const refused = await api(a.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'outage.test', action: 'block' });
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect((refused.body as { code: string }).code).toBe('PCL_ERR_STORE_UNAVAILABLE');
    for (const node of [a, b]) {
      await waitFor(async () => {
        const ready = await fetch(`${node.adminUrl}/readyz`);
        const body = (await ready.json()) as { reason: string | null };
        return ready.status === 503 && /redis/i.test(body.reason ?? '');
      }, 3_000, '/readyz to report redis down');
    }

    // Redis comes back empty (no persistence): the gateways put their policy back and carry on.
    await startRedis();
    for (const node of [a, b]) {
      await waitFor(async () => (await fetch(`${node.adminUrl}/readyz`)).status === 200, 15_000, '/readyz to recover');
    }
    const after = await api(b.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'after.test', action: 'block' });
    expect(after.status, JSON.stringify(after.body)).toBe(201);
    await waitFor(async () => (await rcodeOf(a, 'after.test')) === NXDOMAIN, 1_000, 'the new rule on A');
    // Nothing from before the outage was lost.
    for (const node of [a, b]) expect(await rcodeOf(node, 'www.fleet-a.test')).toBe(NXDOMAIN);
  });

  it('a node started while Redis is down enforces its local copy of the fleet policy, not the config defaults', async () => {
    const { a } = gateways as Required<typeof gateways>;
    expect((await api(a.adminUrl, 'PATCH', '/v1/apps/line', { enabled: false })).status).toBe(200);
    await waitFor(async () => (await rcodeOf(gateways.b!, LINE_NAME)) === NOERROR, 1_000, 'LINE off on B');
    await gateways.b!.stop();
    await killRedis();
    const b = await startNode('b');
    // The config blocks every app; the fleet had LINE off: the fleet's policy wins.
    expect(await rcodeOf(b, LINE_NAME)).toBe(NOERROR);
    expect(await rcodeOf(b, 'www.fleet-a.test')).toBe(NXDOMAIN);
    expect((await fetch(`${b.adminUrl}/readyz`)).status).toBe(503);
    await startRedis();
    await waitFor(async () => (await fetch(`${b.adminUrl}/readyz`)).status === 200, 15_000, 'B ready once Redis is back');
  });
});

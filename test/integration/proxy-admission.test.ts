import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simpleHello } from '../support/client-hello.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { metricValue, scrape } from '../support/gateway-observer.js';
import { runCli, startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

/**
 * Who may use the proxy, and how it finds the servers it dials: never an open proxy
 * (proxy.allowClients, refused by validate and start when a listener reaches beyond private
 * networks without it), and names resolved through the gateway's own DNS cache.
 */
let dir = '';
let dns: FakeUpstream;
let backend: HttpServer;
let backendConnections = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-admission-'));
  dns = await startFakeUpstream({ 'cached.test': [{ type: 'A', value: '127.0.0.1', ttl: 60 }] });
  backend = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-length': 3, connection: 'close' });
    res.end('ok\n');
  });
  backend.on('connection', () => backendConnections++);
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  backend.closeAllConnections();
  await new Promise((resolve) => backend.close(resolve));
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

describe('never an open proxy', () => {
  it.each([
    ['proxy.http.listen', 'proxy:\n  http: { listen: 0.0.0.0:3128 }'],
    ['proxy.tls.listen', 'proxy:\n  tls: { listen: "[::]:8443" }'],
    ['proxy.tls.listen', 'proxy:\n  tls: { listen: 203.0.113.7:8443 }'],
  ])('validate and start refuse a listener beyond private networks without proxy.allowClients (%s)', async (field, yaml) => {
    const file = join(dir, `open-${field}-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, `${yaml}\nstore: { path: ${join(dir, 'data-open')} }\n`);
    const validated = runCli(['validate', '--config', file]);
    expect(validated.code).toBe(1);
    expect(validated.stderr).toContain(file);
    expect(validated.stderr).toContain(field);
    expect(validated.stderr).toContain('proxy.allowClients');
    const started = runCli(['start', '--config', file]);
    expect(started.code).toBe(1);
    expect(started.stderr).toContain(field);
  });

  it('with proxy.allowClients set, the same listener validates', async () => {
    const file = join(dir, 'acl.yaml');
    await writeFile(file, `proxy:\n  http: { listen: 0.0.0.0:3128 }\n  allowClients: [10.0.0.0/8]\nstore: { path: ${join(dir, 'data-acl')} }\n`);
    expect(runCli(['validate', '--config', file]).code).toBe(0);
  });

  it('a bad CIDR in proxy.allowClients is named', async () => {
    const file = join(dir, 'bad-acl.yaml');
    await writeFile(file, `proxy:\n  allowClients: [10.0.0.0/33]\n`);
    const result = runCli(['validate', '--config', file]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('proxy.allowClients');
  });

  describe('a client outside proxy.allowClients', () => {
    let gateway: GatewayProcess;

    beforeAll(async () => {
      const home = join(dir, 'outsider');
      await mkdir(home, { recursive: true });
      const config = await writeGatewayConfig(home, {
        upstream: dns.target,
        proxy: {
          httpUpstreamPort: (backend.address() as AddressInfo).port,
          tlsUpstreamPort: (backend.address() as AddressInfo).port,
          // Loopback is not in it: the test's own connections come from outside.
          lines: ['allowClients: [10.0.0.0/8]', 'hosts: { allowed.test: 127.0.0.1 }', 'allowedUpstreamNetworks: [127.0.0.0/8]'],
        },
      });
      gateway = await startGateway(config);
    });

    afterAll(async () => {
      expect(await gateway.stop()).toBe(0);
    });

    it.each(['tls', 'http'] as const)('is closed at accept on the %s listener without a byte, counted as client-refused, and the upstream never sees it', async (listener) => {
      const before = backendConnections;
      const counted = async (): Promise<number> => metricValue(await scrape(gateway.adminUrl), 'portcullis_proxy_connections_total', `listener="${listener}",result="client-refused"`);
      const was = await counted();
      const socket = connect(listener === 'tls' ? gateway.tlsPort : gateway.httpPort, '127.0.0.1');
      let received = 0;
      socket.on('data', (chunk: Buffer) => (received += chunk.length));
      socket.on('error', () => undefined);
      socket.write(listener === 'tls' ? simpleHello('allowed.test') : 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      expect(received).toBe(0);
      expect(await counted()).toBe(was + 1);
      await sleep(50);
      expect(backendConnections).toBe(before);
    });
  });
});

describe("the proxy's own name resolution goes through the DNS cache", () => {
  let gateway: GatewayProcess;

  beforeAll(async () => {
    const home = join(dir, 'cache');
    await mkdir(home, { recursive: true });
    const config = await writeGatewayConfig(home, {
      upstream: dns.target,
      proxy: { httpUpstreamPort: (backend.address() as AddressInfo).port, lines: ['allowedUpstreamNetworks: [127.0.0.0/8]'] },
    });
    gateway = await startGateway(config);
  });

  afterAll(async () => {
    expect(await gateway.stop()).toBe(0);
  });

  const get = (host: string): Promise<string> =>
    new Promise((resolve) => {
      const socket = connect(gateway.httpPort, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(text));
      socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });

  it('ten requests to one name within its TTL cause one A and one AAAA upstream query', async () => {
    const asked = (type: number): number => dns.queries.filter((q) => q.name === 'cached.test' && q.type === type).length;
    for (let i = 0; i < 10; i++) expect(await get('cached.test')).toMatch(/^HTTP\/1\.1 200 /);
    expect(asked(1)).toBe(1);
    expect(asked(28)).toBe(1);
  });

  it('ten requests at once share the lookups in flight; a name that does not exist is cached as such', async () => {
    const asked = (name: string): number => dns.queries.filter((q) => q.name === name).length;
    const answers = await Promise.all(Array.from({ length: 10 }, () => get('missing.test')));
    for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 502 /);
    expect(asked('missing.test')).toBe(2);
    await get('missing.test');
    expect(asked('missing.test')).toBe(2);
  });
});

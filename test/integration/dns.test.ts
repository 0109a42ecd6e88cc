import { execFile, spawn } from 'node:child_process';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { connect as connectHttp2, type ClientHttp2Session } from 'node:http2';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { Packet, UDPClient, TCPClient } from 'dns2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadBundledRelease, type CatalogRelease } from '../../src/catalog/index.js';
import { loadConfigChecked, type DnsConfig } from '../../src/config/index.js';
import { DnsServer, type DnsAddresses } from '../../src/dns/index.js';
import { createDohListener } from '../../src/dns/doh-listener.js';
import { DnsUdpListener } from '../../src/dns/listeners.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { PolicyEngine, type AppState } from '../../src/policy/index.js';
import { dig, digOne, dnspythonDoh, doh2Requests, dohRequest, frame, kdig, tcpConnect, udpExchange, type DigResult } from '../support/dns-clients.js';
import { QNAME_PTR, T, buildQuery, buildResponse, decode, optRecord, prng, ptr, rr, svcbRdata, u16, wireLabels, wireName } from '../support/dns-message.js';
import { startFakeUpstream, type FakeRecord, type FakeUpstream } from '../support/fake-upstream.js';
import { KAKAO_GSLB_CHAINS } from '../support/gslb-chains.js';

const execFileAsync = promisify(execFile);

// ---- harness -------------------------------------------------------------------------------

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface Resolver {
  server: DnsServer;
  addresses: DnsAddresses;
  port: number;
  upstream: FakeUpstream;
  engine: PolicyEngine;
  config: DnsConfig;
  logs: LogLine[];
  close(): Promise<void>;
}

let catalog: CatalogRelease;
let workDir = '';
/** A self-signed certificate for DoT and DoH, made per run. */
const tls = { cert: '', key: '' };

beforeAll(async () => {
  catalog = await loadBundledRelease();
  workDir = await mkdtemp(join(tmpdir(), 'portcullis-dns-'));
  tls.cert = join(workDir, 'cert.pem');
  tls.key = join(workDir, 'key.pem');
  await execFileAsync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', tls.key, '-out', tls.cert]);
});

/** Overrides that turn DoT and DoH on (the listen ports are moved to 0 by loadTestConfig). */
function encryptedOverrides(): Record<string, string> {
  return { 'dns.tls.cert': tls.cert, 'dns.tls.key': tls.key, 'dns.dot.listen': '127.0.0.1:8853', 'dns.doh.listen': '127.0.0.1:8443' };
}

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

const open: Resolver[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

function capturingLogger(): { logger: Logger; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return { logger: createLogger({ level: 'warn', destination }), logs };
}

/**
 * The DNS config and app state the way `portcullis start` builds them: loadConfigChecked with
 * overrides (so every default is the real one), then only the listen addresses moved to port 0.
 */
async function loadTestConfig(upstream: FakeUpstream, overrides: Record<string, string> = {}): Promise<{ dns: DnsConfig; apps: AppState }> {
  const { config, problems } = await loadConfigChecked({ env: {}, cwd: workDir, overrides: { 'dns.upstreams': upstream.target, ...overrides } });
  if (config === null) throw new Error(`config problems: ${JSON.stringify(problems)}`);
  const dns = config.dns;
  return {
    dns: {
      ...dns,
      listen: '127.0.0.1:0',
      dot: dns.dot === null ? null : { listen: '127.0.0.1:0' },
      doh: dns.doh === null ? null : { ...dns.doh, listen: '127.0.0.1:0' },
    },
    apps: { enabled: new Set(config.policy.apps), extended: new Set(config.policy.extended) },
  };
}

/** Names every catalog app is known by, answered by the fake upstream too (so a miss would resolve). */
const APP_NAMES: [string, string][] = [
  ['talk-pilsner.kakao.com', 'kakaotalk'],
  ['booking.loco.kakao.com', 'kakaotalk'],
  ['legy-jp.line-apps.com', 'line'],
  ['obs.line-scdn.net', 'line'],
  ['x.talkboxapp.com', 'talkbox'],
];

const BASE_RECORDS: Record<string, FakeRecord[]> = {
  'notkakao.com': [{ type: 'A', value: '203.0.113.10' }],
  'kakao.com.evil.net': [{ type: 'A', value: '203.0.113.11' }],
  'www.naver.com': [{ type: 'A', value: '203.0.113.12' }],
  'cloak.example.net': [{ type: 'CNAME', value: 'talk-pilsner.kakao.com' }],
  'media.example.net': [{ type: 'A', value: '147.92.150.1' }],
  'outside.example.net': [{ type: 'A', value: '147.92.0.1' }],
  'news.example.org': [{ type: 'A', value: '203.0.113.20' }],
  'alias.example.org': [{ type: 'CNAME', value: 'target.example.com' }],
  'target.example.com': [{ type: 'A', value: '203.0.113.21' }],
  'big.example.net': Array.from({ length: 6 }, (_, i) => ({ type: 'TXT' as const, value: `${'x'.repeat(150)}${i}` })),
  'stale.example.net': [{ type: 'A', value: '203.0.113.30', ttl: 1 }],
  'media6.example.net': [{ type: 'AAAA', value: '2400:dcc0::1' }],
  'mozilla.cloudflare-dns.com': [{ type: 'A', value: '203.0.113.40' }],
  'use-application-dns.net': [{ type: 'A', value: '203.0.113.41' }],
  'doh-curl.example.net': [{ type: 'A', value: '127.0.0.1' }],
  // Catalog precision: only KakaoTalk's labels of Kakao's shared GSLB zone are blocked.
  ...KAKAO_GSLB_CHAINS,
  ...Object.fromEntries(APP_NAMES.map(([name]) => [name, [{ type: 'A' as const, value: '203.0.113.99' }]])),
};

/**
 * Port 0: UDP takes a free port and TCP the same number, which a TCP socket of this very test
 * run (a client's ephemeral port) may hold; then start again on another port.
 */
async function listenWithRetry(create: () => Promise<DnsServer>): Promise<{ server: DnsServer; addresses: DnsAddresses }> {
  for (let attempt = 0; ; attempt++) {
    const server = await create();
    try {
      return { server, addresses: await server.listen() };
    } catch (e: unknown) {
      await server.close();
      if (attempt >= 20 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
}

async function startResolver(options: { overrides?: Record<string, string>; keep?: boolean } = {}): Promise<Resolver> {
  const upstream = await startFakeUpstream(BASE_RECORDS);
  const { dns: config, apps } = await loadTestConfig(upstream, options.overrides);
  const engine = new PolicyEngine({ catalog: catalog.catalog, categories: catalog.categories, apps });
  const { logger, logs } = capturingLogger();
  const { server, addresses } = await listenWithRetry(() => DnsServer.create({ config, policy: engine, logger }));
  const resolver: Resolver = {
    server,
    addresses,
    port: addresses.udp.port,
    upstream,
    engine,
    config,
    logs,
    close: async () => {
      await server.close();
      await upstream.close();
    },
  };
  if (options.keep !== true) open.push(resolver);
  return resolver;
}

function errorLogs(r: Resolver): LogLine[] {
  return r.logs.filter((l) => l.level >= 50);
}

/** A liveness check: a blocked name answered from policy and an allowed one through the upstream. */
async function expectAlive(r: Resolver): Promise<void> {
  const blocked = await udpExchange(r.port, buildQuery({ id: 0xa11e, name: 'talk-pilsner.kakao.com', edns: {} }), 2_000);
  expect(blocked, 'liveness: blocked name').not.toBeNull();
  expect(decode(blocked!)).toMatchObject({ id: 0xa11e, rcode: 3, ede: { code: 15, text: 'kakaotalk' } });
  const allowed = await udpExchange(r.port, buildQuery({ id: 0xa11f, name: 'www.naver.com' }), 2_000);
  expect(allowed, 'liveness: allowed name').not.toBeNull();
  expect(decode(allowed!).answers.map((a) => a.value)).toEqual(['203.0.113.12']);
}

// ---- blocking ------------------------------------------------------------------------------

const QTYPES = ['A', 'AAAA', 'HTTPS', 'SVCB', 'ANY', 'CNAME', 'MX', 'TXT'];

function expectBlocked(result: DigResult, mode: 'nxdomain' | 'null' | 'refused', qtype: string, app: string | null): void {
  const where = `${result.question?.name ?? '?'} ${qtype}`;
  if (mode === 'nxdomain') expect(result.status, where).toBe('NXDOMAIN');
  if (mode === 'refused') expect(result.status, where).toBe('REFUSED');
  if (mode === 'null') expect(result.status, where).toBe('NOERROR');
  if (mode === 'null' && (qtype === 'A' || qtype === 'AAAA')) {
    expect(result.answers.map((a) => [a.type, a.data]), where).toEqual([[qtype, qtype === 'A' ? '0.0.0.0' : '::']]);
  } else {
    expect(result.answers, where).toEqual([]);
  }
  if (mode !== 'refused' && !(mode === 'null' && (qtype === 'A' || qtype === 'AAAA'))) {
    expect(result.authority.map((a) => [a.type, a.ttl]), where).toEqual([['SOA', 60]]);
    expect(result.authority[0]?.data, where).toMatch(/^portcullis\.invalid\. blocked\.portcullis\.invalid\. \d+ 3600 600 86400 60$/);
  }
  if (app === null) {
    expect(result.ede, where).toBeNull();
  } else {
    expect(result.ede, where).toEqual({ code: 15, text: app });
  }
}

describe.each(['nxdomain', 'null', 'refused'] as const)('blocking in %s mode', (mode) => {
  let r: Resolver;
  beforeAll(async () => {
    r = await startResolver({ overrides: { 'dns.blockMode': mode }, keep: true });
  });
  afterAll(async () => {
    await r.close();
  });

  it('every app name, every qtype, over UDP with EDNS: blocked with EDE 15 naming the app', async () => {
    const args = APP_NAMES.flatMap(([name]) => QTYPES.flatMap((qtype) => [name, qtype]));
    const results = await dig(r.port, args);
    expect(results).toHaveLength(APP_NAMES.length * QTYPES.length);
    APP_NAMES.forEach(([name, app], i) => {
      QTYPES.forEach((qtype, j) => {
        const result = results[i * QTYPES.length + j]!;
        expect(result.question).toEqual({ name: `${name}.`, type: qtype });
        expect(result.hasOpt).toBe(true);
        expectBlocked(result, mode, qtype, app);
      });
    });
    expect(r.upstream.queries).toEqual([]);
  });

  it('without EDNS: the same answers, no OPT and no EDE', async () => {
    const args = ['+noedns', ...APP_NAMES.flatMap(([name]) => QTYPES.flatMap((qtype) => [name, qtype]))];
    const results = await dig(r.port, args);
    expect(results).toHaveLength(APP_NAMES.length * QTYPES.length);
    results.forEach((result, k) => {
      expect(result.hasOpt).toBe(false);
      expectBlocked(result, mode, QTYPES[k % QTYPES.length]!, null);
    });
  });

  it('over TCP (dig +tcp) and from dns2 UDP and TCP clients', async () => {
    const results = await dig(r.port, ['+tcp', ...APP_NAMES.flatMap(([name]) => [name, 'A'])]);
    results.forEach((result, i) => {
      expect(result.transport).toBe('TCP');
      expectBlocked(result, mode, 'A', APP_NAMES[i]![1]);
    });
    const rcode = mode === 'nxdomain' ? 3 : mode === 'refused' ? 5 : 0;
    const udp = UDPClient({ dns: '127.0.0.1', port: r.port, timeout: 2_000 });
    const tcp = TCPClient({ dns: '127.0.0.1', port: r.port });
    for (const [name] of APP_NAMES) {
      for (const client of [udp, tcp]) {
        const answer = await client(name, 'AAAA');
        expect(answer.header.rcode, name).toBe(rcode);
        expect(answer.answers.map((a) => a.address)).toEqual(mode === 'null' ? ['::'] : []);
      }
    }
    expect(r.upstream.queries).toEqual([]);
  });
});

describe('resolving and response inspection', () => {
  let r: Resolver;
  beforeAll(async () => {
    r = await startResolver({ keep: true });
  });
  afterAll(async () => {
    await r.close();
  });

  it('listens on the configured address only, UDP and TCP on one port (port 0: any free one)', () => {
    expect(r.addresses.udp).toEqual({ address: '127.0.0.1', port: r.port });
    expect(r.addresses.tcp).toEqual({ address: '127.0.0.1', port: r.port });
  });

  it('lookalikes resolve through the upstream (dig, dns2 UDP and TCP)', async () => {
    const names: [string, string][] = [
      ['notkakao.com', '203.0.113.10'],
      ['kakao.com.evil.net', '203.0.113.11'],
      ['www.naver.com', '203.0.113.12'],
    ];
    const results = await dig(r.port, names.map(([n]) => n));
    results.forEach((result, i) => {
      expect(result.status).toBe('NOERROR');
      expect(result.ede).toBeNull();
      expect(result.answers.map((a) => a.data)).toEqual([names[i]![1]]);
    });
    for (const [name, address] of names) {
      expect((await UDPClient({ dns: '127.0.0.1', port: r.port, timeout: 2_000 })(name, 'A')).answers.map((a) => a.address)).toEqual([address]);
      expect((await TCPClient({ dns: '127.0.0.1', port: r.port })(name, 'A')).answers.map((a) => a.address)).toEqual([address]);
    }
    expect(r.upstream.queries.map((q) => q.name)).toEqual(expect.arrayContaining(names.map(([n]) => n)));
  });

  it('CNAME cloaking: an allowed name whose CNAME enters a blocked name is blocked, every time', async () => {
    for (let i = 0; i < 2; i++) {
      const result = await digOne(r.port, ['cloak.example.net', 'A']);
      expect(result.status).toBe('NXDOMAIN');
      expect(result.answers).toEqual([]);
      expect(result.ede).toEqual({ code: 15, text: 'kakaotalk' });
    }
    expect(r.upstream.queries.some((q) => q.name === 'cloak.example.net')).toBe(true);
  });

  it('Kakao\'s shared GSLB zone: Daum, Tistory and PotPlayer resolve through it; KakaoTalk\'s own labels are blocked, directly and as a CNAME target', async () => {
    const [daum, tistory, potplayer] = await dig(r.port, ['www.daum.net', 'A', 'jvvp.tistory.com', 'A', 'p1-play.kgslb.com', 'A']);
    expect(daum?.status).toBe('NOERROR');
    expect(daum?.answers.map((a) => a.data)).toEqual(['www-daum-uj2suuqw.kgslb.com.', '211.249.220.24']);
    expect(tistory?.answers.map((a) => a.data)).toEqual(['wildcard-tistory-fz0x1pwf.kgslb.com.', '211.249.222.33']);
    expect(potplayer?.answers.map((a) => a.data)).toEqual(['211.249.221.10']);
    const [direct, viaKakao, viaOther] = await dig(r.port, ['katalk-fo6ld96d.kgslb.com', 'A', 'katalk.kakao.com', 'A', 'chat.partner-gateway.example', 'A']);
    for (const blocked of [direct, viaKakao, viaOther]) {
      expect(blocked?.status).toBe('NXDOMAIN');
      expect(blocked?.ede).toEqual({ code: 15, text: 'kakaotalk' });
    }
    // The name outside kakao.com went upstream and was blocked on its CNAME target, not on its own name.
    expect(r.upstream.queries.some((q) => q.name === 'chat.partner-gateway.example')).toBe(true);
  });

  it('an A answer inside 147.92.128.0/17 (LINE) is blocked; one just outside is not', async () => {
    const [inside, outside] = await dig(r.port, ['media.example.net', 'A', 'outside.example.net', 'A']);
    expect(inside?.status).toBe('NXDOMAIN');
    expect(inside?.ede).toEqual({ code: 15, text: 'line' });
    expect(outside?.status).toBe('NOERROR');
    expect(outside?.answers.map((a) => a.data)).toEqual(['147.92.0.1']);
  });

  it('an AAAA answer inside 2400:dcc0::/32 (LINE) is blocked', async () => {
    const result = await digOne(r.port, ['media6.example.net', 'AAAA']);
    expect(result.status).toBe('NXDOMAIN');
    expect(result.ede).toEqual({ code: 15, text: 'line' });
  });

  it('use-application-dns.net gets NXDOMAIN without asking the upstream', async () => {
    const result = await digOne(r.port, ['use-application-dns.net', 'A']);
    expect(result.status).toBe('NXDOMAIN');
    expect(r.upstream.queries.some((q) => q.name === 'use-application-dns.net')).toBe(false);
  });

  it('keeps the 0x20 case of the question in the answer, from upstream and from cache', async () => {
    const first = await digOne(r.port, ['WwW.NaVeR.CoM', 'A']);
    const second = await digOne(r.port, ['wWw.nAvEr.cOm', 'A']);
    expect(first.question?.name).toBe('WwW.NaVeR.CoM.');
    expect(first.answers.map((a) => a.name)).toEqual(['WwW.NaVeR.CoM.']);
    expect(second.question?.name).toBe('wWw.nAvEr.cOm.');
    expect(second.answers.map((a) => a.name)).toEqual(['wWw.nAvEr.cOm.']);
    const raw = await udpExchange(r.port, buildQuery({ name: 'wWW.naVER.cOM' }));
    expect(raw!.subarray(12, 12 + 15).toString('latin1')).toContain('wWW');
  });

  it('a cache hit is served without asking the upstream again, with the TTL aged', async () => {
    await digOne(r.port, ['news.example.org', 'A']);
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    const again = await digOne(r.port, ['news.example.org', 'A']);
    expect(again.answers[0]?.ttl).toBeLessThan(300);
    expect(r.upstream.queries.filter((q) => q.name === 'news.example.org' && q.type === 1)).toHaveLength(1);
  });

  it('strips the ech SvcParam from HTTPS answers, keeps alpn', async () => {
    const alpn = { key: 1, value: Buffer.from([2, 0x68, 0x32]) };
    const ech = { key: 5, value: Buffer.alloc(40, 1) };
    r.upstream.custom.set('svc.example.net', (query) => {
      const q = Packet.parse(query);
      const response = buildResponse({ id: q.header.id, name: q.questions[0]!.name, qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 300, svcbRdata(1, '.', [alpn, ech]))] });
      return Buffer.concat([response.subarray(0, 10), u16(1), response.subarray(12), optRecord()]);
    });
    const raw = await udpExchange(r.port, buildQuery({ name: 'svc.example.net', qtype: T.HTTPS, edns: {} }));
    const answer = decode(raw!).answers[0];
    expect(answer?.value).toEqual({ priority: 1, target: '.', params: [alpn] });
    const viaDig = await digOne(r.port, ['svc.example.net', 'HTTPS']);
    expect(viaDig.answers[0]?.data).toBe('1 . alpn="h2"');
  });

  it('TC + TCP fallback: a large answer to a client without EDNS is truncated, dig retries over TCP', async () => {
    const udp = decode((await udpExchange(r.port, buildQuery({ name: 'big.example.net', qtype: T.TXT })))!);
    expect(udp.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(udp.questions[0]?.name).toBe('big.example.net');
    const result = await digOne(r.port, ['+noedns', 'big.example.net', 'TXT']);
    expect(result.retriedOverTcp).toBe(true);
    expect(result.transport).toBe('TCP');
    expect(result.flags).not.toContain('tc');
    expect(result.answers).toHaveLength(6);
    // with EDNS (1232) it fits over UDP
    const edns = await digOne(r.port, ['big.example.net', 'TXT']);
    expect(edns.retriedOverTcp).toBe(false);
    expect(edns.transport).toBe('UDP');
    expect(edns.answers).toHaveLength(6);
    // dns2's UDP client falls back to TCP as well
    const viaDns2 = await UDPClient({ dns: '127.0.0.1', port: r.port, timeout: 2_000 })('big.example.net', 'TXT');
    expect(viaDns2.answers).toHaveLength(6);
  });

  it('wrote no error logs', () => {
    expect(errorLogs(r)).toEqual([]);
  });
});

describe('bypass switches', () => {
  it('defaults: the Firefox canary answered NXDOMAIN, public DoH resolver names resolved', async () => {
    const r = await startResolver();
    expect(r.config.bypass).toEqual({ firefoxCanary: true, dohResolvers: false, stripEch: true });
    const [canary, doh] = await dig(r.port, ['use-application-dns.net', 'mozilla.cloudflare-dns.com']);
    expect(canary?.status).toBe('NXDOMAIN');
    expect(doh?.answers.map((a) => a.data)).toEqual(['203.0.113.40']);
  });

  it('switched: the canary passes to the upstream, DoH resolver names are blocked', async () => {
    const r = await startResolver({ overrides: { 'dns.bypass.firefoxCanary': 'false', 'dns.bypass.dohResolvers': 'true' } });
    const [canary, doh] = await dig(r.port, ['use-application-dns.net', 'mozilla.cloudflare-dns.com']);
    expect(canary?.answers.map((a) => a.data)).toEqual(['203.0.113.41']);
    expect(doh?.status).toBe('NXDOMAIN');
    expect(doh?.ede).toEqual({ code: 15, text: 'custom' });
  });

  it('stripEch off: the ech SvcParam reaches the client', async () => {
    const r = await startResolver({ overrides: { 'dns.bypass.stripEch': 'false' } });
    const ech = { key: 5, value: Buffer.alloc(8, 1) };
    r.upstream.custom.set('svc.example.net', (query) => {
      const q = Packet.parse(query);
      return buildResponse({ id: q.header.id, name: q.questions[0]!.name, qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 300, svcbRdata(1, '.', [ech]))] });
    });
    const raw = await udpExchange(r.port, buildQuery({ name: 'svc.example.net', qtype: T.HTTPS }));
    expect(decode(raw!).answers[0]?.value).toEqual({ priority: 1, target: '.', params: [ech] });
  });
});

// ---- upstream failure, serve-stale ---------------------------------------------------------

describe('upstream failure', () => {
  it('a dead upstream gives SERVFAIL within 2 s', async () => {
    const r = await startResolver();
    r.upstream.isSilent = true;
    const started = performance.now();
    const raw = await udpExchange(r.port, buildQuery({ name: 'dead.example.net', edns: {} }), 2_500);
    const elapsed = performance.now() - started;
    expect(raw).not.toBeNull();
    expect(decode(raw!).rcode).toBe(2);
    // RFC 8914 22, No Reachable Authority: nothing answered.
    expect(decode(raw!).ede?.code).toBe(22);
    expect(elapsed).toBeLessThan(2_000);
    // a blocked name is still answered at once
    const blocked = await digOne(r.port, ['talk-pilsner.kakao.com']);
    expect(blocked.status).toBe('NXDOMAIN');
  });

  it('serve-stale: an expired answer comes back with TTL 30 when the upstream is silent; without serveStale, SERVFAIL', async () => {
    const stale = await startResolver();
    const noStale = await startResolver({ overrides: { 'dns.cache.serveStale': 'false' } });
    for (const r of [stale, noStale]) {
      const fresh = await digOne(r.port, ['stale.example.net', 'A']);
      expect(fresh.answers.map((a) => [a.data, a.ttl])).toEqual([['203.0.113.30', 1]]);
    }
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    stale.upstream.isSilent = true;
    noStale.upstream.isSilent = true;
    const [fromStale, fromNoStale] = await Promise.all([digOne(stale.port, ['stale.example.net', 'A']), digOne(noStale.port, ['stale.example.net', 'A'])]);
    expect(fromStale.status).toBe('NOERROR');
    expect(fromStale.answers.map((a) => [a.data, a.ttl])).toEqual([['203.0.113.30', 30]]);
    expect(fromNoStale.status).toBe('SERVFAIL');
    // The stale answer says so (EDE 3), and so does a stale NXDOMAIN (EDE 19).
    const staleRaw = await udpExchange(stale.port, buildQuery({ name: 'stale.example.net', edns: {} }), 2_500);
    expect(decode(staleRaw!).ede?.code).toBe(3);
    // the upstream was asked again before the stale answer was used
    expect(stale.upstream.queries.filter((q) => q.name === 'stale.example.net').length).toBeGreaterThanOrEqual(2);
  });

  it('closing the server while queries wait on a silent upstream (UDP, TCP, DoH) is prompt and raises nothing', async () => {
    const r = await startResolver({ overrides: encryptedOverrides(), keep: true });
    r.upstream.isSilent = true;
    const failures: unknown[] = [];
    const onFailure = (reason: unknown): void => {
      failures.push(reason);
    };
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    try {
      const udp = udpExchange(r.port, buildQuery({ name: 'pending.example.net' }), 300);
      const tcp = await tcpConnect(r.port);
      tcp.socket.write(frame(buildQuery({ name: 'pending-tcp.example.net' })));
      const idle = await tcpConnect(r.port);
      const doh = dohRequest(r.addresses.doh!.port, { method: 'POST', path: '/dns-query', body: buildQuery({ id: 0, name: 'pending-doh.example.net' }), contentType: 'application/dns-message' }).catch((e: unknown) => e);
      await new Promise((resolve) => setTimeout(resolve, 150));
      const started = performance.now();
      await r.close();
      // open TCP connections (one idle, one waiting) are ended, not waited for
      expect(performance.now() - started).toBeLessThan(1_000);
      await Promise.all([udp, tcp.closed, idle.closed, doh]);
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      process.off('unhandledRejection', onFailure);
      process.off('uncaughtException', onFailure);
    }
    expect(failures).toEqual([]);
    expect(errorLogs(r)).toEqual([]);
  });
});

// ---- policy changes ------------------------------------------------------------------------

describe('policy changes apply to the very next query', () => {
  it('a cached name blocked by an admin rule, then allowed again (from cache)', async () => {
    const r = await startResolver();
    expect((await digOne(r.port, ['news.example.org'])).status).toBe('NOERROR');
    r.engine.setAdminRules([{ id: 'r1', type: 'domain', value: 'example.org', action: 'block', app: null, comment: null }]);
    const blocked = await digOne(r.port, ['news.example.org']);
    expect(blocked.status).toBe('NXDOMAIN');
    expect(blocked.ede).toEqual({ code: 15, text: 'custom' });
    r.engine.setAdminRules([]);
    const again = await digOne(r.port, ['news.example.org']);
    expect(again.status).toBe('NOERROR');
    expect(again.answers.map((a) => a.data)).toEqual(['203.0.113.20']);
    expect(r.upstream.queries.filter((q) => q.name === 'news.example.org')).toHaveLength(1);
  });

  it('a cached CNAME chain is inspected again when its target becomes blocked', async () => {
    const r = await startResolver();
    expect((await digOne(r.port, ['alias.example.org'])).answers.map((a) => a.type)).toEqual(['CNAME', 'A']);
    r.engine.setAdminRules([{ id: 'r2', type: 'domain', value: 'target.example.com', action: 'block', app: 'line', comment: null }]);
    const blocked = await digOne(r.port, ['alias.example.org']);
    expect(blocked.status).toBe('NXDOMAIN');
    expect(blocked.ede).toEqual({ code: 15, text: 'line' });
  });

  it('an app switched off resolves, switched back on is blocked', async () => {
    const r = await startResolver();
    r.engine.setAppEnabled('kakaotalk', false);
    const allowed = await digOne(r.port, ['talk-pilsner.kakao.com']);
    expect(allowed.status).toBe('NOERROR');
    expect(allowed.answers.map((a) => a.data)).toEqual(['203.0.113.99']);
    r.engine.setAppEnabled('kakaotalk', true);
    expect((await digOne(r.port, ['talk-pilsner.kakao.com'])).status).toBe('NXDOMAIN');
  });
});

// ---- edges: ACL, rate limit, TCP -----------------------------------------------------------

describe('client limits', () => {
  it('ACL: a client outside allowClients gets REFUSED, even for a blocked name, and the upstream is not asked', async () => {
    const r = await startResolver({ overrides: { 'dns.allowClients': '10.0.0.0/8' } });
    expect(r.config.allowClients).toEqual(['10.0.0.0/8']);
    const results = await dig(r.port, ['www.naver.com', 'talk-pilsner.kakao.com']);
    expect(results.map((x) => x.status)).toEqual(['REFUSED', 'REFUSED']);
    expect(results.map((x) => x.ede)).toEqual([null, null]);
    const tcp = await digOne(r.port, ['+tcp', 'www.naver.com']);
    expect(tcp.status).toBe('REFUSED');
    expect(r.upstream.queries).toEqual([]);
  });

  it('rate limit (5/s, burst 5): REFUSED after the burst', async () => {
    const r = await startResolver({ overrides: { 'dns.rateLimit.perSecond': '5', 'dns.rateLimit.burst': '5' } });
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => udpExchange(r.port, buildQuery({ id: i, name: 'talk-pilsner.kakao.com' }))));
    const rcodes = answers.map((a) => decode(a!).rcode);
    expect(rcodes.filter((c) => c === 3).length).toBeGreaterThanOrEqual(5);
    expect(rcodes.filter((c) => c === 3).length).toBeLessThanOrEqual(6);
    expect(rcodes.filter((c) => c === 5).length).toBeGreaterThanOrEqual(4);
    // tokens come back with time
    await new Promise((resolve) => setTimeout(resolve, 450));
    expect(decode((await udpExchange(r.port, buildQuery({ name: 'talk-pilsner.kakao.com' })))!).rcode).toBe(3);
  });

  it('rate limit with action drop: no answer after the burst', async () => {
    const r = await startResolver({ overrides: { 'dns.rateLimit.perSecond': '1', 'dns.rateLimit.burst': '2', 'dns.rateLimit.action': 'drop' } });
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => udpExchange(r.port, buildQuery({ id: i, name: 'talk-pilsner.kakao.com' }), 400)));
    expect(answers.filter((a) => a !== null)).toHaveLength(2);
  });
});

describe('TCP (RFC 7766)', () => {
  it('pipelining: several queries in one write, each answered on the one connection', async () => {
    const r = await startResolver({ overrides: { 'dns.tcp.idleTimeout': '300ms' } });
    const conversation = await tcpConnect(r.port);
    const queries = [
      buildQuery({ id: 1, name: 'www.naver.com' }),
      buildQuery({ id: 2, name: 'talk-pilsner.kakao.com' }),
      buildQuery({ id: 3, name: 'notkakao.com' }),
      buildQuery({ id: 4, name: 'big.example.net', qtype: T.TXT }),
    ];
    conversation.socket.write(Buffer.concat(queries.map(frame)));
    const responses = (await conversation.waitFor(4)).map(decode);
    const byId = new Map(responses.map((d) => [d.id, d]));
    expect([...byId.keys()].sort()).toEqual([1, 2, 3, 4]);
    expect(byId.get(1)?.answers.map((a) => a.value)).toEqual(['203.0.113.12']);
    expect(byId.get(2)?.rcode).toBe(3);
    expect(byId.get(3)?.answers.map((a) => a.value)).toEqual(['203.0.113.10']);
    expect(byId.get(4)?.answers).toHaveLength(6);
    expect(byId.get(4)?.tc).toBe(false);
  });

  it('kdig +keepopen: several names over one connection', async () => {
    const r = await startResolver();
    const { results, stdout } = await kdig(r.port, ['+tcp', '+keepopen', '+edns', 'www.naver.com', 'A', 'talk-pilsner.kakao.com', 'A', 'notkakao.com', 'A', 'legy-jp.line-apps.com', 'AAAA']);
    expect(results.map((x) => x.status), stdout).toEqual(['NOERROR', 'NXDOMAIN', 'NOERROR', 'NXDOMAIN']);
    expect(results[0]?.answers.map((a) => a.data)).toEqual(['203.0.113.12']);
    expect(results[1]?.ede).toEqual({ code: 15, text: 'kakaotalk' });
    expect(results[3]?.ede).toEqual({ code: 15, text: 'line' });
    expect(stdout).toMatch(/\(TCP\)/);
  });

  it('idle timeout closes the connection', async () => {
    const r = await startResolver({ overrides: { 'dns.tcp.idleTimeout': '300ms' } });
    expect(r.config.tcp.idleTimeoutMs).toBe(300);
    const conversation = await tcpConnect(r.port);
    conversation.socket.write(frame(buildQuery({ name: 'www.naver.com' })));
    await conversation.waitFor(1);
    const started = performance.now();
    await conversation.closed;
    const elapsed = performance.now() - started;
    expect(conversation.responses).toHaveLength(1);
    expect(elapsed).toBeGreaterThan(200);
    expect(elapsed).toBeLessThan(2_000);
  });

  it('connection cap: a connection beyond maxConnections is closed, the others keep working', async () => {
    const r = await startResolver({ overrides: { 'dns.tcp.maxConnections': '2' } });
    const one = await tcpConnect(r.port);
    const two = await tcpConnect(r.port);
    const three = await tcpConnect(r.port);
    await three.closed;
    for (const c of [one, two]) {
      c.socket.write(frame(buildQuery({ name: 'talk-pilsner.kakao.com' })));
      expect(await c.waitFor(1)).toHaveLength(1);
    }
    one.socket.destroy();
    two.socket.destroy();
  });
});

// ---- DoT and DoH ---------------------------------------------------------------------------

describe('DoT and DoH', () => {
  let r: Resolver;
  beforeAll(async () => {
    r = await startResolver({ overrides: encryptedOverrides(), keep: true });
  });
  afterAll(async () => {
    await r.close();
  });

  it('listens on its own ports', () => {
    expect(r.addresses.dot?.port).toBeGreaterThan(0);
    expect(r.addresses.doh?.port).toBeGreaterThan(0);
    expect(r.config.doh?.path).toBe('/dns-query');
  });

  it('DoT with kdig +tls: blocked with EDE, allowed resolves', async () => {
    const { results, stdout } = await kdig(r.addresses.dot!.port, ['+tls', '+edns', 'talk-pilsner.kakao.com', 'A', 'www.naver.com', 'A']);
    expect(results.map((x) => x.status), stdout).toEqual(['NXDOMAIN', 'NOERROR']);
    expect(results[0]?.ede).toEqual({ code: 15, text: 'kakaotalk' });
    expect(results[1]?.answers.map((a) => a.data)).toEqual(['203.0.113.12']);
    expect(stdout).toMatch(/TLS session \(TLS1\.3\)/);
  });

  it('DoH GET ?dns= (base64url, id 0): blocked answer with EDE', async () => {
    const query = buildQuery({ id: 0, name: 'obs.line-scdn.net', qtype: T.AAAA, edns: {} });
    const res = await dohRequest(r.addresses.doh!.port, { method: 'GET', path: `/dns-query?dns=${query.toString('base64url')}` });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/dns-message');
    const d = decode(res.body);
    expect(d).toMatchObject({ id: 0, rcode: 3, ede: { code: 15, text: 'line' } });
  });

  it('DoH POST application/dns-message: an allowed name resolves, Cache-Control from the TTL', async () => {
    const res = await dohRequest(r.addresses.doh!.port, { method: 'POST', path: '/dns-query', body: buildQuery({ id: 0, name: 'www.naver.com' }), contentType: 'application/dns-message' });
    expect(res.status).toBe(200);
    expect(decode(res.body).answers.map((a) => a.value)).toEqual(['203.0.113.12']);
    expect(res.headers['cache-control']).toMatch(/^max-age=(300|299)$/);
  });

  it('DoH refuses what is not a DNS request: wrong path, bad base64, wrong type, wrong method', async () => {
    const port = r.addresses.doh!.port;
    const q = buildQuery({ id: 0 }).toString('base64url');
    expect((await dohRequest(port, { method: 'GET', path: `/other?dns=${q}` })).status).toBe(404);
    expect((await dohRequest(port, { method: 'GET', path: '/dns-query?dns=%%%' })).status).toBe(400);
    expect((await dohRequest(port, { method: 'GET', path: '/dns-query' })).status).toBe(400);
    expect((await dohRequest(port, { method: 'GET', path: '/dns-query?dns=AAAA' })).status).toBe(400);
    expect((await dohRequest(port, { method: 'POST', path: '/dns-query', body: buildQuery({}), contentType: 'text/plain' })).status).toBe(415);
    expect((await dohRequest(port, { method: 'PUT', path: '/dns-query', body: buildQuery({}), contentType: 'application/dns-message' })).status).toBe(405);
  });

  it('DoH answers a malformed DNS message with FORMERR, and a response (QR=1) with an HTTP error instead of hanging', async () => {
    const port = r.addresses.doh!.port;
    const formerr = await dohRequest(port, { method: 'POST', path: '/dns-query', body: buildQuery({ qdcount: 2 }), contentType: 'application/dns-message' });
    expect(formerr.status).toBe(200);
    expect(decode(formerr.body).rcode).toBe(1);
    const response = await dohRequest(port, { method: 'POST', path: '/dns-query', body: buildQuery({ flags: 0x8180 }), contentType: 'application/dns-message' });
    expect(response.status).toBe(400);
    const short = await dohRequest(port, { method: 'POST', path: '/dns-query', body: Buffer.alloc(5), contentType: 'application/dns-message' });
    expect(short.status).toBe(400);
  });

  it('DoH: a handler that throws gives 500 and a log line, not a crash', async () => {
    const { logger, logs } = capturingLogger();
    const server = createDohListener(
      () => {
        throw new Error('boom');
      },
      { path: '/dns-query', cert: await readFile(tls.cert), key: await readFile(tls.key), limits: { idleTimeoutMs: 1_000, maxConnections: 10, maxPipelined: 10 } },
      logger,
    );
    const sockets = new Set<Socket>();
    server.on('connection', (socket: Socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const res = await dohRequest(port, { method: 'POST', path: '/dns-query', body: buildQuery({ id: 0 }), contentType: 'application/dns-message' });
      expect(res.status).toBe(500);
      expect(logs.map((l) => l.msg)).toEqual(['dns handler threw (a bug)']);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('DoH: a query dropped by the rate limit gets 429 at once instead of hanging', async () => {
    const limited = await startResolver({
      overrides: { ...encryptedOverrides(), 'dns.rateLimit.perSecond': '1', 'dns.rateLimit.burst': '1', 'dns.rateLimit.action': 'drop', 'dns.tcp.idleTimeout': '300ms' },
    });
    const port = limited.addresses.doh!.port;
    const post = (): Promise<unknown> => dohRequest(port, { method: 'POST', path: '/dns-query', body: buildQuery({ id: 0, name: 'talk-pilsner.kakao.com' }), contentType: 'application/dns-message' }).catch((e: unknown) => e);
    expect(await post()).toMatchObject({ status: 200 });
    const started = performance.now();
    const dropped = await post();
    expect(dropped).toMatchObject({ status: 429 });
    expect(performance.now() - started).toBeLessThan(250);
  });

  it.each(['+https', '+https-get'])('kdig %s (HTTP/2): a blocked name answers NXDOMAIN with EDE 15, an allowed name resolves', async (mode) => {
    const { results, stdout } = await kdig(r.addresses.doh!.port, [mode, '+edns', 'talk-pilsner.kakao.com', 'A', 'www.naver.com', 'A']);
    expect(stdout).toMatch(new RegExp(`HTTP/2-${mode === '+https' ? 'POST' : 'GET'}`));
    expect(results.map((x) => x.status), stdout).toEqual(['NXDOMAIN', 'NOERROR']);
    expect(results[0]?.ede).toEqual({ code: 15, text: 'kakaotalk' });
    expect(results[1]?.answers.map((a) => a.data)).toEqual(['203.0.113.12']);
  });

  it.each([
    ['h1', 'post'],
    ['h1', 'get'],
    ['h2', 'post'],
    ['h2', 'get'],
  ] as const)('dnspython over %s (%s): blocked with EDE 15, allowed resolves', async (version, method) => {
    const url = `https://127.0.0.1:${r.addresses.doh!.port}/dns-query`;
    const blocked = await dnspythonDoh(url, 'talk-pilsner.kakao.com', 'A', version, method);
    expect(blocked).toMatchObject({ httpVersion: version === 'h1' ? 'HTTP/1.1' : 'HTTP/2', rcode: 'NXDOMAIN', ede: [{ code: 15, text: 'kakaotalk' }] });
    const allowed = await dnspythonDoh(url, 'www.naver.com', 'A', version, method);
    expect(allowed).toMatchObject({ rcode: 'NOERROR', answers: ['203.0.113.12'] });
  });

  it('curl --doh-url: resolves an allowed name and fetches from it, cannot resolve a blocked one', async () => {
    const web = createHttpServer((_req, res) => res.end('reached\n'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    try {
      const webPort = (web.address() as { port: number }).port;
      const doh = ['--doh-url', `https://127.0.0.1:${r.addresses.doh!.port}/dns-query`, '--doh-insecure', '--max-time', '5', '-sS'];
      const allowed = await execFileAsync('curl', [...doh, `http://doh-curl.example.net:${webPort}/`]);
      expect(allowed.stdout).toBe('reached\n');
      const blocked = await execFileAsync('curl', [...doh, `http://talk-pilsner.kakao.com:${webPort}/`]).catch((e: unknown) => e as { code: number; stderr: string });
      expect(blocked).toMatchObject({ code: 6 }); // CURLE_COULDNT_RESOLVE_HOST
    } finally {
      web.closeAllConnections();
      await new Promise<void>((resolve) => web.close(() => resolve()));
    }
  });

  it('HTTP/2: announces the stream limit, answers more concurrent queries than it on one connection, errors as over HTTP/1.1', async () => {
    const port = r.addresses.doh!.port;
    const limit = r.config.tcp.maxPipelined;
    const queries = Array.from({ length: limit * 3 }, (_, i) => ({ method: 'POST' as const, path: '/dns-query', body: buildQuery({ id: 0, name: i % 2 === 0 ? 'www.naver.com' : 'talk-pilsner.kakao.com' }), contentType: 'application/dns-message' }));
    const { replies, remoteSettings } = await doh2Requests(port, queries);
    expect(remoteSettings.maxConcurrentStreams).toBe(limit);
    expect(replies.map((x) => x.status)).toEqual(queries.map(() => 200));
    expect(replies.map((x) => decode(x.body).rcode)).toEqual(queries.map((_, i) => (i % 2 === 0 ? 0 : 3)));
    expect(replies[0]?.headers['cache-control']).toMatch(/^max-age=\d+$/);
    const q = buildQuery({ id: 0 }).toString('base64url');
    const errors = await doh2Requests(port, [
      { method: 'GET', path: `/other?dns=${q}` },
      { method: 'GET', path: '/dns-query?dns=%%%' },
      { method: 'POST', path: '/dns-query', body: buildQuery({}), contentType: 'text/plain' },
      { method: 'POST', path: '/dns-query', body: buildQuery({ flags: 0x8180 }), contentType: 'application/dns-message' },
      { method: 'POST', path: '/dns-query', body: Buffer.alloc(70_000), contentType: 'application/dns-message' },
      { method: 'GET', path: `/dns-query?dns=${q}` },
    ]);
    expect(errors.replies.map((x) => x.status)).toEqual([404, 400, 415, 400, 413, 200]);
  });

  it('an idle HTTP/2 connection is closed at the idle timeout; connections beyond maxConnections are refused', async () => {
    const short = await startResolver({ overrides: { ...encryptedOverrides(), 'dns.tcp.idleTimeout': '300ms', 'dns.tcp.maxConnections': '2' } });
    const port = short.addresses.doh!.port;
    const open = (): Promise<{ session: ClientHttp2Session; closed: Promise<number> }> =>
      new Promise((resolve, reject) => {
        const started = performance.now();
        const session = connectHttp2(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
        const closed = new Promise<number>((done) => session.once('close', () => done(performance.now() - started)));
        session.once('error', () => undefined);
        session.once('remoteSettings', () => resolve({ session, closed }));
        session.once('close', () => reject(new Error('closed before its settings')));
      });
    const first = await open();
    const second = await open();
    await expect(open()).rejects.toThrow();
    const idleFor = await first.closed;
    expect(idleFor).toBeGreaterThanOrEqual(250);
    expect(idleFor).toBeLessThan(2_000);
    await second.closed;
    expect((await doh2Requests(port, [{ method: 'GET', path: `/dns-query?dns=${buildQuery({ id: 0, name: 'www.naver.com' }).toString('base64url')}` }])).replies[0]?.status).toBe(200);
  });
});

// ---- malformed packets ---------------------------------------------------------------------

interface CorpusCase {
  name: string;
  packet: Buffer;
  /** The rcode expected back (with extended bits), or null: no answer at all. */
  rcode: number | null;
}

const CORPUS: CorpusCase[] = [
  { name: 'qdcount 0', packet: buildQuery({ noQuestion: true }), rcode: 1 },
  { name: 'qdcount 2', packet: Buffer.concat([buildQuery({ qdcount: 2 }), wireName('b.example'), u16(1), u16(1)]), rcode: 1 },
  { name: 'qdcount 65535', packet: buildQuery({ qdcount: 0xffff }), rcode: 1 },
  { name: 'question cut short', packet: buildQuery({ name: 'www.example.com' }).subarray(0, 20), rcode: 1 },
  { name: 'qtype cut short', packet: buildQuery({ name: 'www.example.com' }).subarray(0, 31), rcode: 1 },
  { name: 'label past the end', packet: Buffer.concat([buildQuery({ noQuestion: true, qdcount: 1 }), Buffer.from([63, 0x61, 0x62])]), rcode: 1 },
  { name: 'compression loop (pointer to itself)', packet: buildQuery({ nameWire: ptr(12) }), rcode: 1 },
  { name: 'compression loop (label then pointer back)', packet: buildQuery({ nameWire: Buffer.concat([Buffer.from([1, 0x61]), ptr(12)]) }), rcode: 1 },
  { name: 'forward pointer', packet: buildQuery({ nameWire: ptr(14) }), rcode: 1 },
  { name: 'pointer past the end', packet: buildQuery({ nameWire: ptr(0x3fff) }), rcode: 1 },
  { name: 'name over 255 octets', packet: buildQuery({ nameWire: wireLabels(Array.from({ length: 5 }, () => 'x'.repeat(63))) }), rcode: 1 },
  { name: 'label type 0x40', packet: buildQuery({ nameWire: Buffer.from([0x41, 0x61, 0]) }), rcode: 1 },
  { name: 'label type 0x80', packet: buildQuery({ nameWire: Buffer.from([0x81, 0x61, 0]) }), rcode: 1 },
  { name: 'two OPT records', packet: buildQuery({ additional: [optRecord()], edns: {} }), rcode: 1 },
  { name: 'OPT owner not root', packet: buildQuery({ edns: { owner: wireName('x') } }), rcode: 1 },
  { name: 'OPT option past its RDATA', packet: buildQuery({ edns: { rawOptions: Buffer.concat([u16(10), u16(200), Buffer.alloc(4)]) } }), rcode: 1 },
  { name: 'OPT option header cut', packet: buildQuery({ edns: { rawOptions: Buffer.from([0, 8]) } }), rcode: 1 },
  { name: 'announced answer missing', packet: Buffer.concat([buildQuery({}).subarray(0, 6), u16(1), buildQuery({}).subarray(8)]), rcode: 1 },
  { name: 'trailing garbage', packet: buildQuery({ trailing: Buffer.from('garbage') }), rcode: 1 },
  { name: 'huge datagram of trailing garbage', packet: buildQuery({ trailing: Buffer.alloc(60_000, 0x41) }), rcode: 1 },
  { name: 'EDNS version 1', packet: buildQuery({ edns: { version: 1 } }), rcode: 16 },
  { name: 'opcode 2 (STATUS)', packet: buildQuery({ flags: 0x1100 }), rcode: 4 },
  { name: 'class CHAOS', packet: buildQuery({ name: 'version.bind', qtype: T.TXT, qclass: 3 }), rcode: 5 },
  { name: 'response (QR=1)', packet: buildQuery({ flags: 0x8180, name: 'www.naver.com' }), rcode: null },
  { name: 'response with an answer (QR=1)', packet: buildResponse({ name: 'www.naver.com', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 1, Buffer.alloc(4))] }), rcode: null },
  { name: '11 bytes', packet: Buffer.alloc(11, 1), rcode: null },
  { name: 'empty datagram', packet: Buffer.alloc(0), rcode: null },
];

// UDP is served by the native batch socket when the addon is built, by dns2's dgram server
// otherwise: both face the corpus and the fuzz.
const UDP_PATHS = [
  ['the native batch socket', 'true'],
  ['dns2 (dgram)', 'false'],
] as const;

describe.each(UDP_PATHS)('malformed-packet corpus, UDP through %s', (_path, batching) => {
  let r: Resolver;
  beforeAll(async () => {
    r = await startResolver({ overrides: { 'dns.rateLimit.perSecond': '0', 'dns.udpBatching': batching }, keep: true });
  });

  it('serves UDP through the socket asked for (the addon is built wherever the tests run)', () => {
    expect(r.server.udpIo).toBe(batching === 'true' ? 'batch' : 'dgram');
  });
  afterAll(async () => {
    await r.close();
  });

  it.each(CORPUS)('UDP: $name, then a liveness query', async ({ packet, rcode }) => {
    const answer = await udpExchange(r.port, packet, rcode === null ? 300 : 1_500);
    if (rcode === null) {
      expect(answer).toBeNull();
    } else {
      expect(answer).not.toBeNull();
      const d = decode(answer!);
      expect(d.qr).toBe(true);
      expect(d.id).toBe(packet.readUInt16BE(0));
      expect(d.rcode).toBe(rcode);
      expect(d.answers).toEqual([]);
      expect(answer!.length).toBeLessThanOrEqual(512);
    }
    await expectAlive(r);
  });

  it.each(CORPUS.filter((c) => c.packet.length >= 12))('TCP: $name, then a valid query on the same connection', async ({ packet, rcode }) => {
    const conversation = await tcpConnect(r.port);
    conversation.socket.write(frame(packet));
    conversation.socket.write(frame(buildQuery({ id: 0x600d, name: 'www.naver.com' })));
    const responses = await conversation.waitFor(rcode === null ? 1 : 2);
    conversation.socket.destroy();
    const decoded = responses.map(decode);
    const live = decoded.find((d) => d.id === 0x600d);
    expect(live?.answers.map((a) => a.value)).toEqual(['203.0.113.12']);
    if (rcode === null) {
      expect(decoded).toHaveLength(1);
    } else {
      expect(decoded.find((d) => d.id !== 0x600d || d.rcode !== 0)?.rcode).toBe(rcode);
    }
  });

  it('TCP: a frame shorter than a header closes the connection; a frame announced but never finished waits for the peer', async () => {
    const short = await tcpConnect(r.port);
    short.socket.write(frame(Buffer.alloc(5)));
    await short.closed;
    const partial = await tcpConnect(r.port);
    partial.socket.write(Buffer.concat([u16(500), Buffer.alloc(20)]));
    partial.socket.end();
    await partial.closed;
    expect(partial.responses).toEqual([]);
    await expectAlive(r);
  });

  it('TCP: a response (QR=1) left unanswered does not keep the connection open once the client is done', async () => {
    expect(r.config.tcp.idleTimeoutMs).toBe(10_000);
    const conversation = await tcpConnect(r.port);
    conversation.socket.end(Buffer.concat([frame(buildQuery({ flags: 0x8180 })), frame(buildQuery({ id: 0x600d, name: 'talk-pilsner.kakao.com' }))]));
    const started = performance.now();
    await conversation.closed;
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(conversation.responses.map((m) => decode(m).id)).toEqual([0x600d]);
  });

  it('UDP from source port 0 is dropped before the handler (DnsUdpListener.handle)', async () => {
    const seen: number[] = [];
    const listener = new DnsUdpListener('udp4', (_buf, client) => seen.push(client.port), capturingLogger().logger);
    const rinfo = (port: number): RemoteInfo => ({ address: '127.0.0.1', family: 'IPv4', port, size: 30 });
    listener.handle(buildQuery({}), rinfo(0));
    expect(seen).toEqual([]);
    listener.handle(buildQuery({}), rinfo(5353));
    expect(seen).toEqual([5353]);
    listener.close();
    await expectAlive(r);
  });

  it('a handler that throws is caught and logged, never thrown out of handle()', () => {
    const { logger, logs } = capturingLogger();
    const listener = new DnsUdpListener(
      'udp4',
      () => {
        throw new Error('boom');
      },
      logger,
    );
    expect(() => listener.handle(buildQuery({}), { address: '127.0.0.1', family: 'IPv4', port: 1000, size: 30 })).not.toThrow();
    expect(logs.map((l) => l.msg)).toEqual(['dns handler threw (a bug)']);
    listener.close();
  });

  it('wrote no error logs', () => {
    expect(errorLogs(r)).toEqual([]);
  });
});

// ---- fuzz ----------------------------------------------------------------------------------

const FUZZ_PACKETS = 10_000;

/** Random bytes half the time; otherwise a valid query with a few bytes changed, cut, or extended. */
function fuzzPackets(seed: number): Buffer[] {
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const names = ['talk-pilsner.kakao.com', 'www.naver.com', 'a.b.c.example.net', 'use-application-dns.net', ''];
  const out: Buffer[] = [];
  for (let i = 0; i < FUZZ_PACKETS; i++) {
    if (random() < 0.5) {
      const length = random() < 0.2 ? int(12) : 12 + int(500);
      out.push(Buffer.from(Array.from({ length }, () => int(256))));
      continue;
    }
    const packet = buildQuery({
      id: int(0x10000),
      flags: random() < 0.5 ? 0x0100 : int(0x10000),
      name: names[int(names.length)]!,
      qtype: [1, 28, 65, 255, 16, int(0x10000)][int(6)],
      edns: random() < 0.5 ? { udpSize: int(0x10000), dnssecOk: random() < 0.5, options: random() < 0.3 ? [{ code: 10, data: Buffer.alloc(int(40)) }] : [] } : null,
    });
    const mutations = 1 + int(4);
    for (let m = 0; m < mutations; m++) {
      const kind = int(5);
      const at = int(packet.length);
      if (kind === 0) packet[at] = int(256);
      else if (kind === 1) packet[at] = packet[at]! ^ (1 << int(8));
      else if (kind === 2) packet.writeUInt16BE(0xc000 | int(packet.length + 4), Math.min(at, packet.length - 2));
      else if (kind === 3) packet.writeUInt16BE(int(4), 4 + 2 * int(4));
      else packet[at] = [0, 0x3f, 0x40, 0x80, 0xc0, 0xff][int(6)]!;
    }
    const cut = random() < 0.2 ? int(packet.length) : packet.length;
    out.push(random() < 0.1 ? Buffer.concat([packet.subarray(0, cut), Buffer.alloc(int(20), int(256))]) : packet.subarray(0, cut));
  }
  return out;
}

describe.each(UDP_PATHS)('random-bytes fuzz, UDP through %s', (_path, batching) => {
  let r: Resolver;
  const failures: unknown[] = [];
  const onFailure = (reason: unknown): void => {
    failures.push(reason);
  };
  beforeAll(async () => {
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    r = await startResolver({ overrides: { 'dns.rateLimit.perSecond': '0', 'dns.tcp.idleTimeout': '500ms', 'dns.udpBatching': batching }, keep: true });
  });
  afterAll(async () => {
    await r.close();
    process.off('unhandledRejection', onFailure);
    process.off('uncaughtException', onFailure);
  });

  it(`${FUZZ_PACKETS} packets over UDP, then alive`, async () => {
    const packets = fuzzPackets(0x5eed);
    const socket = createSocket('udp4');
    let answers = 0;
    socket.on('message', () => answers++);
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    for (let i = 0; i < packets.length; i += 200) {
      await Promise.all(
        packets.slice(i, i + 200).map(
          (p) =>
            new Promise<void>((resolve) => {
              socket.send(p, r.port, '127.0.0.1', () => resolve());
            }),
        ),
      );
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.close();
    expect(answers).toBeGreaterThan(300);
    // the mutated queries that still parse went the whole way, through policy to the upstream
    expect(r.upstream.queries.length).toBeGreaterThan(50);
    await expectAlive(r);
    expect(failures).toEqual([]);
    expect(errorLogs(r)).toEqual([]);
  });

  it(`${FUZZ_PACKETS} packets over TCP (framed, plus raw garbage streams), then alive`, async () => {
    const packets = fuzzPackets(0xf00d);
    const random = prng(7);
    const perConnection = 50;
    const connections: Promise<number>[] = [];
    for (let i = 0; i < packets.length; i += perConnection) {
      const batch = packets.slice(i, i + perConnection);
      connections.push(
        (async () => {
          const conversation = await tcpConnect(r.port);
          // one connection in ten gets unframed garbage, as a stream
          const bytes = random() < 0.1 ? Buffer.concat(batch) : Buffer.concat(batch.map(frame));
          conversation.socket.end(bytes);
          await Promise.race([conversation.closed, new Promise((resolve) => setTimeout(resolve, 4_000))]);
          conversation.socket.destroy();
          return conversation.responses.length;
        })(),
      );
    }
    const answered = (await Promise.all(connections)).reduce((a, b) => a + b, 0);
    expect(answered).toBeGreaterThan(300);
    await expectAlive(r);
    const tcp = await tcpConnect(r.port);
    tcp.socket.write(frame(buildQuery({ id: 9, name: 'www.naver.com' })));
    expect((await tcp.waitFor(1)).map((m) => decode(m).answers.length)).toEqual([1]);
    tcp.socket.destroy();
    expect(failures).toEqual([]);
    expect(errorLogs(r)).toEqual([]);
  });
});

// ---- the acceptance check, as an operator runs it -------------------------------------------

/** A port free for both TCP and UDP on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    const port = await new Promise<number>((resolve) => {
      server.listen(0, '127.0.0.1', () => {
        resolve((server.address() as { port: number }).port);
      });
    });
    const udp = createSocket('udp4');
    const isFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (isFree) return port;
  }
}

describe('portcullis start (spawned, as `npm start` runs it)', () => {
  it('answers dig with NXDOMAIN + EDE for talk-pilsner.kakao.com, resolves an allowed name via the upstream, exits 0 on SIGTERM', async () => {
    const upstream = await startFakeUpstream(BASE_RECORDS);
    const [dnsPort, tlsPort, httpPort, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const config = join(workDir, 'start.yaml');
    await writeFile(
      config,
      [
        'dns:',
        `  listen: 127.0.0.1:${dnsPort}`,
        `  upstreams: [${upstream.target}]`,
        'proxy:',
        `  tls: { listen: 127.0.0.1:${tlsPort} }`,
        `  http: { listen: 127.0.0.1:${httpPort} }`,
        'admin:',
        `  listen: 127.0.0.1:${adminPort}`,
        'store:',
        `  path: ${join(workDir, 'data')}`,
        '',
      ].join('\n'),
    );
    const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    const child = spawn(process.execPath, [cli, 'start', '--config', config], { cwd: workDir, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const lines: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line });
      }
    });
    try {
      const deadline = Date.now() + 15_000;
      while (!lines.some((l) => l.msg === 'portcullis started')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`portcullis did not start: ${stderr} ${JSON.stringify(lines)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const blocked = await digOne(dnsPort, ['talk-pilsner.kakao.com']);
      expect(blocked.status).toBe('NXDOMAIN');
      expect(blocked.ede).toEqual({ code: 15, text: 'kakaotalk' });
      const allowed = await digOne(dnsPort, ['www.naver.com']);
      expect(allowed.status).toBe('NOERROR');
      expect(allowed.answers.map((a) => a.data)).toEqual(['203.0.113.12']);
      expect(upstream.queries.map((q) => q.name)).toContain('www.naver.com');
      const overTcp = await digOne(dnsPort, ['+tcp', 'legy-jp.line-apps.com', 'HTTPS']);
      expect(overTcp.ede).toEqual({ code: 15, text: 'line' });
    } finally {
      child.kill('SIGTERM');
      await exited;
      await upstream.close();
    }
    expect(child.exitCode, stderr).toBe(0);
  });
});

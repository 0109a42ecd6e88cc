import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, waitFor, type GatewayProcess } from '../support/gateway-process.js';
import { locoFirstSegment } from '../support/loco.js';
import { applyNft, createTopology, netnsUnavailable, nsExec, startInNs, type Topology } from '../support/netns/topology.js';

/**
 * The transparent gateway end to end, in network namespaces this test creates:
 *   client ns (10.77.1.2) -> gateway ns (nftables redirect / TPROXY, portcullis) -> server ns
 * The server namespace holds 198.18.0.10 (an ordinary web server) and addresses inside the
 * catalog's ranges: 110.76.141.10 (Kakao core, every port), 27.0.236.25 (Kakao extended
 * tier: LOCO ports only), 147.92.150.1 (LINE). The client uses real curl and openssl, and
 * raw TCP and QUIC Initial packets from a small client; nothing knows it is intercepted.
 */
const execFileAsync = promisify(execFile);
const unavailable = netnsUnavailable();
if (unavailable !== null) console.warn(`transparent-netns tests skipped: ${unavailable}`);

const WEB = '198.18.0.10';
const KAKAO_CORE = '110.76.141.10';
const KAKAO_LOCO_RANGE = '27.0.236.25';
const LINE = '147.92.150.1';
const WEB6 = '2001:db8:10::10';
const LINE6 = '2400:dcc0::1';
const TCP_LISTEN_PORT = 15001;
const QUIC_LISTEN_PORT = 15443;
const ECHO_PORTS = [5223, 5228, 9000];
const RESET_PORT = 5300;
const COUNT_PORT = 5301;
const HALF_CLOSE_PORT = 5302;
/** Routed to the server namespace, but nobody there has it: SYNs vanish (connect timeout). */
const UNANSWERED = '198.18.0.99';
const PER_CLIENT = 8;
const REPS = PER_CLIENT + 2;
/** Left to the kernel (not intercepted): the exported nftables ruleset decides there. */
const KERNEL_PORT = 5228;
const BANNER_PORT = 2525;
const TSX = ['--import', 'tsx'];
const CHROMIUM = '/usr/bin/chromium';
const CLIENT_SCRIPT = fileURLToPath(new URL('../support/netns/client.ts', import.meta.url));
const SERVER_SCRIPT = fileURLToPath(new URL('../support/netns/servers.ts', import.meta.url));

type Mode = 'redirect' | 'tproxy';

/** IPv4 and IPv6 alike (inet tables): TCP by REDIRECT or TPROXY, UDP 443 by TPROXY. */
function nftRuleset(mode: Mode): string {
  const tcp =
    mode === 'redirect'
      ? `table inet portcullis_nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "gc" tcp dport != ${KERNEL_PORT} redirect to :${TCP_LISTEN_PORT}
  }
}`
      : '';
  const tproxyTcp =
    mode === 'tproxy'
      ? `    iifname "gc" meta nfproto ipv4 tcp dport != ${KERNEL_PORT} tproxy ip to :${TCP_LISTEN_PORT} meta mark set 1 accept
    iifname "gc" meta nfproto ipv6 tcp dport != ${KERNEL_PORT} tproxy ip6 to :${TCP_LISTEN_PORT} meta mark set 1 accept\n`
      : '';
  return `${tcp}
table inet portcullis_mangle {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname "gc" meta nfproto ipv4 udp dport 443 tproxy ip to :${QUIC_LISTEN_PORT} meta mark set 1 accept
    iifname "gc" meta nfproto ipv6 udp dport 443 tproxy ip6 to :${QUIC_LISTEN_PORT} meta mark set 1 accept
${tproxyTcp}  }
}
`;
}

interface TcpResult {
  connected: boolean;
  data: string;
  error: string | null;
}

describe.skipIf(unavailable !== null)('transparent gateway in network namespaces', () => {
  let network: Topology | null = null;
  let dir = '';
  let servers: ChildProcess | null = null;
  const topology = (): Topology => {
    if (network === null) throw new Error('network namespaces not set up');
    return network;
  };
  let gateway: GatewayProcess | null = null;

  const client = (args: string[], timeoutMs = 10_000) => nsExec(topology().client, process.execPath, [...TSX, CLIENT_SCRIPT, ...args], timeoutMs);
  const tcp = async (host: string, port: number, payload = 'hello', gapMs = 0): Promise<TcpResult> => {
    const result = await client(['tcp', host, String(port), payload, String(gapMs)]);
    return JSON.parse(result.stdout) as TcpResult;
  };
  const quic = async (host: string, name: string, options: { pieces?: number; version?: 1 | 2; extra?: number; reverse?: boolean; port?: number } = {}): Promise<{ from: string; data: string }[]> => {
    const args = [String(options.pieces ?? 2), String(options.version ?? 1), String(options.extra ?? 0), options.reverse === true ? 'reverse' : 'in-order'];
    const result = await client(['quic', host, String(options.port ?? 443), name, ...args]);
    return (JSON.parse(result.stdout) as { replies: { from: string; data: string }[] }).replies;
  };
  const curl = (args: string[]) => nsExec(topology().client, 'curl', ['-sS', '--max-time', '5', ...args]);
  const metrics = async (): Promise<string> => {
    const url = `${gateway!.adminUrl}/metrics`;
    return (await nsExec(topology().gateway, 'curl', ['-sS', url])).stdout;
  };
  const metricValue = (text: string, name: string, labels: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line === undefined ? Number.NaN : Number(line.split(' ').pop());
  };

  interface Outcome {
    data: string;
    error: string | null;
    ended: boolean;
    closed: boolean;
    ms: number;
  }
  const lifecycle = async (scenario: string, host: string, port: number): Promise<Outcome[]> => {
    const result = await client(['lifecycle', host, String(port), scenario, String(REPS)], 60_000);
    return (JSON.parse(result.stdout) as { outcomes: Outcome[] }).outcomes;
  };
  /** What the gateway holds: intercepted connections open, descriptors, connections refused as limited. */
  const held = async (): Promise<{ active: number; descriptors: number; limited: number }> => {
    const text = await metrics();
    return {
      active: metricValue(text, 'portcullis_proxy_active_connections', 'listener="transparent"'),
      descriptors: readdirSync(`/proc/${gateway!.child.pid!}/fd`).length,
      limited: metricValue(text, 'portcullis_proxy_connections_total', 'listener="transparent",result="limited"'),
    };
  };
  /** A long-running client in the client namespace, driven line by line over stdin. */
  const holdClient = (args: string[]): { next(): Promise<Record<string, unknown>>; send(): void; stop(): void } => {
    const child = spawn('ip', ['netns', 'exec', topology().client, process.execPath, ...TSX, CLIENT_SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: Record<string, unknown>[] = [];
    const waiters: (() => void)[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
      waiters.splice(0).forEach((wake) => wake());
    });
    const next = async (): Promise<Record<string, unknown>> => {
      const started = Date.now();
      while (lines.length === 0) {
        if (Date.now() - started > 10_000) throw new Error(`no answer from ${args.join(' ')}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
      return lines.shift()!;
    };
    return { next, send: () => child.stdin.write('go\n'), stop: () => child.kill('SIGKILL') };
  };
  const adminWrite = async (method: string, path: string, body: unknown): Promise<number> => {
    const result = await nsExec(topology().gateway, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', method, '-H', 'content-type: application/json', '-d', JSON.stringify(body), `${gateway!.adminUrl}${path}`]);
    return Number(result.stdout);
  };

  const startFor = async (mode: Mode): Promise<void> => {
    await gateway?.stop();
    applyNft(topology().gateway, nftRuleset(mode));
    const config = join(dir, `portcullis-${mode}.yaml`);
    await writeFile(
      config,
      [
        'dns: { listen: 127.0.0.1:0, upstreams: [127.0.0.1:1] }',
        'proxy:',
        '  tls: { listen: 127.0.0.1:0 }',
        '  http: { listen: 127.0.0.1:0 }',
        '  allowedUpstreamNetworks: [198.18.0.0/15, 2001:db8::/32]',
        // The client namespace's networks: the wildcard listeners below need them said.
        "  allowClients: [10.77.1.0/24, 'fd77:1::/64']",
        `  maxConnectionsPerClient: ${PER_CLIENT}`,
        '  clientHelloTimeout: 2s',
        '  connectTimeout: 500ms',
        '  idleTimeout: 1s',
        '  halfClosedTimeout: 500ms',
        '  transparent:',
        `    mode: ${mode}`,
        // Dual-stack: IPv4 clients arrive as IPv4-mapped addresses.
        `    tcp: '[::]:${TCP_LISTEN_PORT}'`,
        `    quic: '[::]:${QUIC_LISTEN_PORT}'`,
        '    firstDataTimeout: 300ms',
        '    quicIdleTimeout: 5s',
        'admin: { listen: 127.0.0.1:0 }',
        `store: { path: ${join(dir, `data-${mode}`)} }`,
        'policy: { extended: [kakaotalk] }',
        `nftables: { file: ${join(dir, `ip-${mode}.nft`)}, apply: true }`,
        '',
      ].join('\n'),
    );
    gateway = await startGateway(config, [], 20_000, ['ip', 'netns', 'exec', topology().gateway]);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-netns-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await execFileAsync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=server', '-days', '1', '-keyout', key, '-out', cert]);
    network = createTopology([WEB, KAKAO_CORE, KAKAO_LOCO_RANGE, LINE, WEB6, LINE6]);
    servers = await startInNs(topology().server, process.execPath, [...TSX, SERVER_SCRIPT, JSON.stringify({ cert, key, echoPorts: ECHO_PORTS, bannerPort: BANNER_PORT, resetPort: RESET_PORT, countPort: COUNT_PORT, halfClosePort: HALF_CLOSE_PORT, udpAddresses: [WEB, LINE, WEB6, LINE6] })], 'ready');
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    servers?.kill('SIGKILL');
    network?.destroy();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  describe.each(['redirect', 'tproxy'] as const)('TCP intercepted by nftables %s', (mode) => {
    beforeAll(() => startFor(mode), 30_000);

    it('HTTPS to a blocked app name fails with a handshake alert (curl and openssl)', async () => {
      const result = await curl(['-k', '--resolve', `talk-pilsner.kakao.com:443:${WEB}`, 'https://talk-pilsner.kakao.com/']);
      expect(result.code).toBe(35);
      expect(result.stderr).toMatch(/handshake failure|alert/i);
      const openssl = await nsExec(topology().client, 'openssl', ['s_client', '-connect', `${WEB}:443`, '-servername', 'legy-jp.line-apps.com', '-brief'], 10_000);
      expect(openssl.code).not.toBe(0);
      expect(openssl.stderr + openssl.stdout).toMatch(/handshake failure|alert/i);
    });

    it('HTTPS to an allowed name reaches the server the client chose, SNI intact', async () => {
      const result = await curl(['-k', '--resolve', `www.example.org:443:${WEB}`, 'https://www.example.org/']);
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe('tls www.example.org www.example.org');
      const openssl = await nsExec(topology().client, 'openssl', ['s_client', '-connect', `${WEB}:443`, '-servername', 'news.example.net', '-brief'], 10_000);
      expect(openssl.stderr).toMatch(/CONNECTION ESTABLISHED/);
    });

    it('an allowed name sent to an address in a blocked app range is still refused', async () => {
      const result = await curl(['-k', '--resolve', `www.example.org:443:${LINE}`, 'https://www.example.org/']);
      expect(result.code).not.toBe(0);
      expect(result.stdout).toBe('');
    });

    it('plain HTTP is judged on every request Host, and goes to the original address', async () => {
      const allowed = await curl([`http://${WEB}/`, '-H', 'Host: www.example.org']);
      expect(allowed.stdout).toBe('http www.example.org');
      const blocked = await curl(['-o', '/dev/null', '-w', '%{http_code}', `http://${WEB}/`, '-H', 'Host: talk-pilsner.kakao.com']);
      expect(blocked.stdout).toBe('451');
      // Keep-alive: the second request on the same connection names a blocked app.
      const both = await curl(['--resolve', `ok.example.org:80:${WEB}`, '--resolve', `gift.kakao.com:80:${WEB}`, '-w', ' %{http_code}\n', 'http://ok.example.org/', 'http://gift.kakao.com/']);
      expect(both.stdout).toMatch(/^http ok\.example\.org 200\n/);
      expect(both.stdout).toMatch(/451\n$/);
    });

    it('a request dripped byte by byte past the first-data wait is still judged on its Host', async () => {
      const dripped = await tcp(WEB, 80, 'G|E|T| / HTTP/1.1\r\nHost: talk-pilsner.kakao.com\r\n\r\n', 200);
      expect(dripped.data).toMatch(/^HTTP\/1\.1 451 /);
      const allowed = await tcp(WEB, 80, 'G|ET / HTTP/1.1\r\nHost: www.example.org\r\nConnection: close\r\n\r\n', 400);
      expect(allowed.data).toMatch(/^HTTP\/1\.1 200 [\s\S]*http www\.example\.org$/);
    });

    it('raw TCP is decided on address and port: Kakao LOCO ports on Kakao ranges and LINE networks fail, other ports pass', async () => {
      expect(await tcp(KAKAO_LOCO_RANGE, 5223)).toMatchObject({ data: '', error: 'ECONNRESET' });
      expect(await tcp(KAKAO_LOCO_RANGE, 9000)).toMatchObject({ data: 'echo hello', error: null });
      expect(await tcp(KAKAO_CORE, 9000)).toMatchObject({ data: '', error: 'ECONNRESET' });
      expect(await tcp(LINE, 9000)).toMatchObject({ data: '', error: 'ECONNRESET' });
      expect(await tcp(WEB, 5223)).toMatchObject({ data: 'echo hello', error: null });
    });

    it('IPv6: names, addresses and ports are judged the same way', async () => {
      const blocked = await curl(['-k', '--resolve', `talk-pilsner.kakao.com:443:[${WEB6}]`, 'https://talk-pilsner.kakao.com/']);
      expect(blocked.code).toBe(35);
      const allowed = await curl(['-k', '--resolve', `www.example.org:443:[${WEB6}]`, 'https://www.example.org/']);
      expect(allowed.stdout).toBe('tls www.example.org www.example.org');
      const http = await curl(['-o', '/dev/null', '-w', '%{http_code}', `http://[${WEB6}]/`, '-H', 'Host: gift.kakao.com']);
      expect(http.stdout).toBe('451');
      expect(await tcp(LINE6, 9000)).toMatchObject({ data: '', error: 'ECONNRESET' });
      expect(await tcp(WEB6, 9000)).toMatchObject({ data: 'echo hello', error: null });
    });

    it('KakaoTalk LOCO is recognised by its bytes on any address and port: reset while KakaoTalk is blocked, passed unchanged when it is not', async () => {
      const segments = [locoFirstSegment(16, 3, false), locoFirstSegment(15, 2, true)];
      for (const segment of segments) {
        expect(await tcp(WEB, 9000, `hex:${segment.toString('hex')}`)).toMatchObject({ connected: true, data: '', error: 'ECONNRESET' });
        expect(await tcp(WEB6, 9000, `hex:${segment.toString("hex")}`)).toMatchObject({ data: "", error: "ECONNRESET" });
      }
      expect(metricValue(await metrics(), 'portcullis_blocked_total', 'app="kakaotalk",layer="protocol"')).toBeGreaterThanOrEqual(4);
      expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: false })).toBe(200);
      try {
        const passed = await tcp(WEB, 9000, `hex:${segments[1]!.toString('hex')}`);
        expect(passed).toMatchObject({ connected: true, error: null });
        // The echo server writes back "echo " + the bytes it read (as latin1 text, sent UTF-8).
        const echoed = Buffer.from(Buffer.from(passed.data, 'latin1').toString('utf8'), 'latin1');
        expect(echoed.subarray(0, 5).toString()).toBe('echo ');
        expect(echoed.subarray(5, 5 + 268)).toEqual(segments[1]!.subarray(0, 268));
      } finally {
        expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: true })).toBe(200);
      }
    });

    it('a protocol where the server speaks first is passed through after the first-data wait', async () => {
      expect(await tcp(WEB, BANNER_PORT, '-')).toMatchObject({ data: '220 banner\r\n', error: null });
    });

    it('a connection aimed at the listener itself is not dialled back into it', async () => {
      const result = await tcp(topology().gatewayClientSide, TCP_LISTEN_PORT);
      expect(result.data).toBe('');
      const text = await metrics();
      expect(metricValue(text, 'portcullis_proxy_connections_total', 'listener="transparent",result="not-intercepted"')).toBeGreaterThanOrEqual(1);
    });

    it('the kernel refuses what is not intercepted by the exported ruleset, rewritten on every policy change', async () => {
      expect(await tcp(KAKAO_LOCO_RANGE, KERNEL_PORT)).toMatchObject({ connected: false, data: '' });
      expect(await tcp(WEB, KERNEL_PORT)).toMatchObject({ connected: true, data: 'echo hello' });
      const switchKakao = async (enabled: boolean): Promise<void> => {
        const url = `${gateway!.adminUrl}/v1/apps/kakaotalk`;
        const result = await nsExec(topology().gateway, 'curl', ['-sS', '-f', '-X', 'PATCH', '-H', 'content-type: application/json', '-d', JSON.stringify({ enabled }), url]);
        expect(result.code).toBe(0);
      };
      await switchKakao(false);
      try {
        await waitFor(async () => (await tcp(KAKAO_LOCO_RANGE, KERNEL_PORT)).data === 'echo hello', 10_000, 'the kernel to let Kakao through');
      } finally {
        await switchKakao(true);
      }
      await waitFor(async () => !(await tcp(KAKAO_LOCO_RANGE, KERNEL_PORT)).connected, 10_000, 'the kernel to drop Kakao again');
      const text = await metrics();
      expect(metricValue(text, 'portcullis_reloads_total', 'kind="nftables",result="success"')).toBeGreaterThanOrEqual(3);
      expect(metricValue(text, 'portcullis_reloads_total', 'kind="nftables",result="failure"')).toBe(0);
    });

    describe('every way an intercepted connection ends, more times than the per-client limit', () => {
      let baseline = 0;
      beforeAll(async () => {
        await lifecycle('client-fin', WEB, 9000);
        await waitFor(async () => (await held()).active === 0, 5_000, 'no connection open');
        baseline = (await held()).descriptors;
      });

      it.each([
        ['server FIN first', 'server-fin', () => WEB, BANNER_PORT, (o: Outcome) => expect(o).toMatchObject({ data: '220 banner\r\n', ended: true, error: null })],
        ['client FIN first', 'client-fin', () => WEB, 9000, (o: Outcome) => expect(o).toMatchObject({ data: 'echo hello', closed: true, error: null })],
        ['client RST', 'client-rst', () => WEB, 9000, (o: Outcome) => expect(o.data).toBe('echo hello')],
        ['upstream RST', 'upstream-rst', () => WEB, RESET_PORT, (o: Outcome) => expect(o.error).toBe('ECONNRESET')],
        ['half-close, client to server', 'half-close-client', () => WEB, COUNT_PORT, (o: Outcome) => expect(o).toMatchObject({ data: 'got 100000', ended: true, error: null })],
        ['half-close, server to client', 'half-close-server', () => WEB, HALF_CLOSE_PORT, (o: Outcome) => expect(o).toMatchObject({ data: 'bye', ended: true, closed: true, error: null })],
        ['the client writing after the server closed', 'write-after-close', () => WEB, BANNER_PORT, (o: Outcome) => expect(o).toMatchObject({ ended: true, closed: true })],
        ['abort before the first bytes', 'abort-before', () => WEB, 9000, (o: Outcome) => expect(o.data).toBe('')],
        ['abort in the middle of the hello', 'abort-mid-hello', () => WEB, 443, (o: Outcome) => expect(o.data).toBe('')],
        ['blocked by address', 'send', () => KAKAO_CORE, 9000, (o: Outcome) => expect(o).toMatchObject({ data: '', error: 'ECONNRESET' })],
        ['blocked by SNI', 'blocked-sni', () => WEB, 443, (o: Outcome) => expect(o.data.charCodeAt(0)).toBe(0x15)],
        ['dial failure', 'send', () => WEB, 7777, (o: Outcome) => expect(o.error).toBe('ECONNRESET')],
        ['connect timeout', 'send', () => UNANSWERED, 9000, (o: Outcome) => expect(o.error === 'ECONNRESET' && o.ms >= 450).toBe(true)],
        ['idle timeout', 'idle', () => WEB, 9000, (o: Outcome) => expect(o.data === 'echo hello' && o.closed && o.ms >= 900 && o.ms < 3_000).toBe(true)],
      ])('%s', async (_what, scenario, host, port, check) => {
        const before = await held();
        const outcomes = await lifecycle(scenario, host(), port);
        expect(outcomes).toHaveLength(REPS);
        for (const outcome of outcomes) check(outcome);
        await waitFor(async () => {
          const now = await held();
          return now.active === 0 && now.descriptors <= baseline;
        }, 5_000, 'the gateway to hold nothing again');
        expect((await held()).limited).toBe(before.limited);
      }, 90_000);
    });

    it('switching KakaoTalk to blocked resets an established raw TCP connection to a Kakao range: the next write fails within 1 s', async () => {
      expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: false })).toBe(200);
      const probe = holdClient(['hold', KAKAO_LOCO_RANGE, '5223']);
      try {
        expect(await probe.next()).toEqual({ ready: true });
        const switchedAt = Date.now();
        expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: true })).toBe(200);
        probe.send();
        const result = await probe.next();
        expect(result.error).toBe('ECONNRESET');
        expect(Date.now() - switchedAt).toBeLessThan(1_000 + 500);
        expect(Number(result.ms)).toBeLessThan(1_000);
      } finally {
        probe.stop();
        await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: true });
      }
      expect(metricValue(await metrics(), 'portcullis_proxy_connections_total', 'listener="transparent",result="policy-cut"')).toBeGreaterThanOrEqual(1);
    }, 30_000);

    it('the kernel layer too: a forwarded flow to a range that becomes blocked loses its conntrack entry and is reset at its next segment', async () => {
      const reloads = async (): Promise<number> => metricValue(await metrics(), 'portcullis_reloads_total', 'kind="nftables",result="success"');
      const tracked = async (): Promise<number> => {
        const listed = await nsExec(topology().gateway, 'conntrack', ['-L', '-p', 'tcp', '-d', KAKAO_LOCO_RANGE, '--dport', String(KERNEL_PORT)]);
        return listed.stdout.split('\n').filter((l) => l.includes('ESTABLISHED')).length;
      };
      let written = await reloads();
      expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: false })).toBe(200);
      await waitFor(async () => (await reloads()) > written, 5_000, 'the ruleset without Kakao');
      const probe = holdClient(['hold', KAKAO_LOCO_RANGE, String(KERNEL_PORT)]);
      try {
        expect(await probe.next()).toEqual({ ready: true });
        // Connection tracking runs in the namespace only where a rule needs it (the REDIRECT
        // NAT): there the flow's entry must go; with TPROXY alone nothing tracks it.
        const isTracked = (await tracked()) === 1;
        expect(isTracked).toBe(mode === 'redirect');
        written = await reloads();
        const switchedAt = Date.now();
        expect(await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: true })).toBe(200);
        await waitFor(async () => (await reloads()) > written, 5_000, 'the ruleset with Kakao');
        if (isTracked) await waitFor(async () => (await tracked()) === 0, 2_000, 'the flow to be forgotten by conntrack');
        probe.send();
        const result = await probe.next();
        expect(result.error).toBe('ECONNRESET');
        expect(Date.now() - switchedAt).toBeLessThan(1_000 + 1_500);
      } finally {
        probe.stop();
        await adminWrite('PATCH', '/v1/apps/kakaotalk', { enabled: true });
      }
    }, 30_000);

    it('counts what it did by listener and layer, with no names or addresses in labels', async () => {
      const text = await metrics();
      expect(metricValue(text, 'portcullis_blocked_total', 'app="kakaotalk",layer="tls"')).toBeGreaterThanOrEqual(1);
      expect(metricValue(text, 'portcullis_blocked_total', 'app="kakaotalk",layer="ip"')).toBeGreaterThanOrEqual(2);
      expect(metricValue(text, 'portcullis_blocked_total', 'app="line",layer="ip"')).toBeGreaterThanOrEqual(2);
      expect(metricValue(text, 'portcullis_blocked_total', 'app="kakaotalk",layer="http"')).toBeGreaterThanOrEqual(2);
      expect(metricValue(text, 'portcullis_proxy_connections_total', 'listener="transparent",result="forwarded"')).toBeGreaterThanOrEqual(5);
      expect(text).not.toMatch(/kakao\.com|198\.18\.|10\.77\.|fd77:|2001:db8/);
    });
  });

  describe('QUIC (UDP 443 by TPROXY)', () => {
    beforeAll(() => startFor('redirect'), 30_000);

    it('relays an allowed flow both ways, answers coming from the address the client chose', async () => {
      const replies = await quic(WEB, 'www.example.org', { pieces: 2, extra: 1 });
      expect(replies.map((r) => r.from)).toEqual([`${WEB}:443`, `${WEB}:443`, `${WEB}:443`]);
      expect(replies.map((r) => r.data.split(' ').slice(0, 2).join(' '))).toEqual(['ack 1', 'ack 2', 'ack 3']);
    });

    it('IPv6: relays an allowed flow from the address chosen, drops a blocked name and a blocked network', async () => {
      const replies = await quic(WEB6, 'www.example.org', { pieces: 2 });
      expect(replies.map((r) => r.from)).toEqual([`${WEB6}:443`, `${WEB6}:443`]);
      expect(await quic(WEB6, 'talk-pilsner.kakao.com', { pieces: 2 })).toEqual([]);
      expect(await quic(LINE6, 'www.example.org', { pieces: 2 })).toEqual([]);
    });

    it('an Initial sent straight at the QUIC listener is not taken for a flow (no loop back into it)', async () => {
      const before = await metrics();
      expect(await quic(topology().gatewayClientSide, 'www.example.org', { port: QUIC_LISTEN_PORT })).toEqual([]);
      const after = await metrics();
      for (const result of ['forwarded', 'forbidden']) {
        const labels = `listener="quic",result="${result}"`;
        expect(metricValue(after, 'portcullis_proxy_connections_total', labels)).toBe(metricValue(before, 'portcullis_proxy_connections_total', labels));
      }
    });

    it('reads QUIC v2 Initials too, and a hello whose packets arrive last first', async () => {
      expect(await quic(WEB, 'www.example.org', { pieces: 3, version: 2 })).toHaveLength(3);
      expect(await quic(WEB, 'www.example.org', { pieces: 3, reverse: true })).toHaveLength(3);
      expect(await quic(WEB, 'gift.kakao.com', { pieces: 3, reverse: true })).toEqual([]);
    });

    it('drops a flow whose ClientHello names a blocked app, split over packets or not', async () => {
      expect(await quic(WEB, 'talk-pilsner.kakao.com', { pieces: 2, extra: 2 })).toEqual([]);
      expect(await quic(WEB, 'legy-jp.line-apps.com', { pieces: 1, version: 2 })).toEqual([]);
      const text = await metrics();
      expect(metricValue(text, 'portcullis_blocked_total', 'app="kakaotalk",layer="quic"')).toBeGreaterThanOrEqual(1);
      expect(metricValue(text, 'portcullis_blocked_total', 'app="line",layer="quic"')).toBeGreaterThanOrEqual(1);
    });

    it.skipIf(!existsSync(CHROMIUM) && process.env.CI !== 'true')('a real browser: Chromium forced onto QUIC is relayed for an allowed name, dropped for a blocked one', async () => {
      const chromium = (host: string) =>
        nsExec(
          topology().client,
          CHROMIUM,
          [
            ...['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
            `--user-data-dir=${join(dir, `chromium-${host}`)}`,
            '--enable-quic',
            `--origin-to-force-quic-on=${host}:443`,
            `--host-resolver-rules=MAP * ${WEB}`,
            '--dump-dom',
            `https://${host}/`,
          ],
          30_000,
        );
      const count = (text: string, labels: string): number => metricValue(text, 'portcullis_proxy_connections_total', labels);
      const before = await metrics();
      await chromium('www.example.org');
      const afterAllowed = await metrics();
      expect(count(afterAllowed, 'listener="quic",result="forwarded"')).toBeGreaterThan(count(before, 'listener="quic",result="forwarded"'));
      await chromium('talk-pilsner.kakao.com');
      const afterBlocked = await metrics();
      expect(metricValue(afterBlocked, 'portcullis_blocked_total', 'app="kakaotalk",layer="quic"')).toBeGreaterThan(metricValue(afterAllowed, 'portcullis_blocked_total', 'app="kakaotalk",layer="quic"'));
      expect(count(afterBlocked, 'listener="quic",result="forwarded"')).toBe(count(afterAllowed, 'listener="quic",result="forwarded"'));
    }, 90_000);

    it('a relayed flow whose name becomes blocked is dropped from then on', async () => {
      const probe = holdClient(['quichold', WEB, '443', 'quic-cut.example.org']);
      let ruleId = '';
      try {
        expect(await probe.next()).toMatchObject({ ready: true });
        probe.send();
        expect(await probe.next()).toEqual({ replies: 1 });
        const created = await nsExec(topology().gateway, 'curl', ['-sS', '-X', 'POST', '-H', 'content-type: application/json', '-d', JSON.stringify({ type: 'domain', value: 'quic-cut.example.org', action: 'block' }), `${gateway!.adminUrl}/v1/rules`]);
        ruleId = (JSON.parse(created.stdout) as { id: string }).id;
        probe.send();
        expect(await probe.next()).toEqual({ replies: 0 });
        expect(metricValue(await metrics(), 'portcullis_proxy_connections_total', 'listener="quic",result="policy-cut"')).toBeGreaterThanOrEqual(1);
      } finally {
        probe.stop();
        if (ruleId !== '') await nsExec(topology().gateway, 'curl', ['-sS', '-X', 'DELETE', `${gateway!.adminUrl}/v1/rules/${ruleId}`]);
      }
    }, 30_000);

    it('drops a flow to a blocked address whatever name it sends, and datagrams that are not QUIC', async () => {
      expect(await quic(LINE, 'www.example.org')).toEqual([]);
      const garbage = await nsExec(topology().client, process.execPath, [
        '-e',
        `const s=require('node:dgram').createSocket('udp4');s.on('message',()=>{console.log('reply');process.exit(0)});s.send(Buffer.alloc(1200,7),443,'${WEB}');setTimeout(()=>{console.log('none');process.exit(0)},1000);`,
      ]);
      expect(garbage.stdout.trim()).toBe('none');
    });
  });
});

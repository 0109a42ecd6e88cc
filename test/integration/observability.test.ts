import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { freePort, resolveA, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD = join(ROOT, 'dashboards', 'portcullis.json');
const ALERTS = join(ROOT, 'dashboards', 'alerts.yaml');
const ALERT_TESTS = join(ROOT, 'dashboards', 'alerts.test.yaml');
const JOB = 'portcullis';

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Dashboard {
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

function run(command: string, args: string[], input?: string): { code: number | null; out: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', input, timeout: 60_000 });
  if (result.error !== undefined) throw new Error(`${command} could not run (apt-get install prometheus): ${result.error.message}`);
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

let dashboard: Dashboard;
let dir = '';
let upstream: FakeUpstream;
let gateway: GatewayProcess;
let prometheus: ChildProcess | null = null;
let prometheusUrl = '';
let metricsText = '';

/** A panel target's expression as Grafana would send it for this gateway. */
function substitute(expr: string): string {
  return expr.replaceAll('$__rate_interval', '30s').replaceAll('$__interval', '15s').replaceAll('$__range', '5m').replaceAll('$job', JOB).replaceAll('$instance', '.*');
}

async function promQuery(expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } };
}

function tlsBlocked(port: number, servername: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    socket.once('error', () => resolve());
    socket.once('close', () => resolve());
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve();
    });
  });
}

function httpRequest(port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.once('close', () => resolve(text));
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
  dir = await mkdtemp(join(tmpdir(), 'portcullis-observability-'));
  upstream = await startFakeUpstream({ 'allowed.example': [{ type: 'A', value: '192.0.2.30' }] });
  const home = join(dir, 'gateway');
  await mkdir(home, { recursive: true });
  gateway = await startGateway(await writeGatewayConfig(home, { upstream: upstream.target }));

  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  const adminTarget = gateway.adminUrl.replace('http://', '');
  await writeFile(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${ALERTS}']`,
      'scrape_configs:',
      `  - job_name: ${JOB}`,
      `    static_configs: [{ targets: ['${adminTarget}'] }]`,
      '',
    ].join('\n'),
  );
  prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  prometheus.once('error', (e) => {
    throw new Error(`prometheus could not start (apt-get install prometheus): ${e.message}`);
  });

  // A little of everything: allowed (twice: a cache hit), blocked by name, TLS and HTTP blocks.
  for (let i = 0; i < 3; i++) {
    await resolveA(gateway.dnsPort, 'allowed.example');
    await resolveA(gateway.dnsPort, 'talk-pilsner.kakao.com');
    await resolveA(gateway.dnsPort, 'legy-jp.line-apps.com');
    await tlsBlocked(gateway.tlsPort, 'talk-pilsner.kakao.com');
    expect(await httpRequest(gateway.httpPort, 'legy-jp.line-apps.com')).toMatch(/^HTTP\/1\.1 451/);
  }
  metricsText = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
  await waitFor(
    async () => {
      try {
        const scrapes = await promQuery(`count_over_time(up{job="${JOB}"}[1m])`);
        const tls = await promQuery('sum(portcullis_blocked_total{layer="tls"})');
        return Number((scrapes.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0) >= 4 && (tls.data?.result.length ?? 0) > 0;
      } catch {
        return false;
      }
    },
    30_000,
    'prometheus to scrape the gateway several times',
  );
}, 60_000);

afterAll(async () => {
  prometheus?.kill('SIGKILL');
  await gateway.stop('SIGKILL');
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe('alert rules', () => {
  it('promtool check rules and promtool test rules pass', () => {
    const check = run('promtool', ['check', 'rules', ALERTS]);
    expect(check.code, check.out).toBe(0);
    const tests = run('promtool', ['test', 'rules', ALERT_TESTS]);
    expect(tests.code, tests.out).toBe(0);
  });

  it('a real Prometheus loads every rule and evaluates it without error', async () => {
    interface Rule {
      name: string;
      health: string;
      lastError?: string;
    }
    let rules: Rule[] = [];
    await waitFor(
      async () => {
        const body = (await (await fetch(`${prometheusUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: Rule[] }[] } };
        rules = body.data.groups.flatMap((g) => g.rules);
        return rules.length > 0 && rules.every((r) => r.health === 'ok');
      },
      10_000,
      'every rule evaluated',
    );
    expect(rules.map((r) => r.name).sort()).toEqual(
      ['PortcullisBlockRateAnomaly', 'PortcullisCatalogExpiring', 'PortcullisCatalogUpdateRefused', 'PortcullisDnsCacheFull', 'PortcullisDown', 'PortcullisReloadFailing', 'PortcullisServfailRatioHigh', 'PortcullisStoreDown', 'PortcullisUpstreamErrorsHigh', 'PortcullisUpstreamsDown'].sort(),
    );
  });
});

describe('/metrics', () => {
  it('passes promtool check metrics', () => {
    const result = run('promtool', ['check', 'metrics'], metricsText);
    expect(result.code, result.out).toBe(0);
  });

  it('counts the traffic by bounded labels only: no names, no client addresses', () => {
    expect(metricsText).toMatch(/^portcullis_blocked_total\{app="kakaotalk",layer="dns"\} [1-9]/m);
    expect(metricsText).toMatch(/^portcullis_blocked_total\{app="kakaotalk",layer="tls"\} [1-9]/m);
    expect(metricsText).toMatch(/^portcullis_blocked_total\{app="line",layer="http"\} [1-9]/m);
    expect(metricsText).toMatch(/^portcullis_dns_queries_total\{protocol="udp",result="cached"\} [1-9]/m);
    expect(metricsText).not.toMatch(/kakao\.com|line-apps|allowed\.example|127\.0\.0\.1(?!:)/);
  });
});

describe('dashboard', () => {
  const panels = (): Panel[] => dashboard.panels.filter((p) => p.type !== 'row');

  it('is a current Grafana model: unique panel ids, a datasource variable, no fixed datasource uid', async () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const panel of panels()) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.datasource?.uid ?? '${datasource}', panel.title).toBe('${datasource}');
    }
    const text = await readFile(DASHBOARD, 'utf8');
    for (const uid of text.matchAll(/"uid":\s*"([^"]*)"/g)) expect(['${datasource}', 'portcullis', '-- Grafana --']).toContain(uid[1]);
  });

  it('uses only metrics that /metrics exports', () => {
    const exported = new Set([...metricsText.matchAll(/^# TYPE (portcullis_[a-z_0-9]+) /gm)].map((m) => m[1]!));
    for (const panel of panels()) {
      for (const target of panel.targets ?? []) {
        for (const [name] of target.expr.matchAll(/portcullis_[a-z_0-9]+/g)) {
          const family = name.replace(/_(bucket|sum|count)$/, '');
          expect(exported.has(name) || exported.has(family), `${panel.title}: ${name}`).toBe(true);
        }
      }
    }
  });

  it('every panel query returns data from a real Prometheus scraping a running gateway', async () => {
    const empty: string[] = [];
    for (const panel of panels()) {
      for (const target of panel.targets ?? []) {
        const result = await promQuery(substitute(target.expr));
        expect(result.status, `${panel.title}: ${result.error ?? ''}`).toBe('success');
        if ((result.data?.result.length ?? 0) === 0) empty.push(`${panel.title}: ${target.expr}`);
      }
    }
    expect(empty).toEqual([]);
  });
});

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { READ_TOKEN, WRITE_TOKEN, api, resolveA, runCli, startGateway, waitFor, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

const NXDOMAIN = 3;
const LINE_NAME = 'legy-jp.line-apps.com';
const ALLOWED_ANSWER = '192.0.2.10';

let dir = '';
let upstream: FakeUpstream;
const running = new Set<GatewayProcess>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-admin-e2e-'));
  upstream = await startFakeUpstream({
    [LINE_NAME]: [{ type: 'A', value: ALLOWED_ANSWER }],
    'www.example-blocked.test': [{ type: 'A', value: ALLOWED_ANSWER }],
  });
});

afterAll(async () => {
  await Promise.all([...running].map((g) => g.stop('SIGKILL')));
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

async function gatewayIn(name: string, args: string[] = [], extra: string[] = []): Promise<{ gateway: GatewayProcess; config: string; home: string }> {
  const home = join(dir, name);
  await rm(home, { recursive: true, force: true });
  const { mkdir } = await import('node:fs/promises');
  await mkdir(home, { recursive: true });
  const config = await writeGatewayConfig(home, { upstream: upstream.target, extra: extra.map((line) => line.replaceAll('HOME', home)) });
  const gateway = await startGateway(config, args);
  running.add(gateway);
  return { gateway, config, home };
}

async function restart(config: string, args: string[] = []): Promise<GatewayProcess> {
  const gateway = await startGateway(config, args);
  running.add(gateway);
  return gateway;
}

describe('a change acknowledged by the API is enforced by DNS at once', () => {
  it('PATCH /v1/apps/line: LINE resolves within 100 ms of the 200, and is blocked again within 100 ms of re-enabling', async () => {
    const { gateway } = await gatewayIn('switch');
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);

    const off = await api(gateway.adminUrl, 'PATCH', '/v1/apps/line', { enabled: false });
    expect(off.status).toBe(200);
    const resolvedMs = await waitFor(async () => (await resolveA(gateway.dnsPort, LINE_NAME))?.addresses[0] === ALLOWED_ANSWER, 1_000, 'LINE to resolve');
    expect(resolvedMs).toBeLessThan(100);

    const on = await api(gateway.adminUrl, 'PATCH', '/v1/apps/line', { enabled: true });
    expect(on.status).toBe(200);
    // The answer is cached by now: the block must still win over the cache.
    const blockedMs = await waitFor(async () => (await resolveA(gateway.dnsPort, LINE_NAME))?.rcode === NXDOMAIN, 1_000, 'LINE to be blocked');
    expect(blockedMs).toBeLessThan(100);
    console.log(`propagation, one gateway: app off -> resolves ${resolvedMs.toFixed(1)} ms, app on -> blocked ${blockedMs.toFixed(1)} ms (after the API's 200)`);
    await gateway.stop();
  });

  it('the README one-liner: curl -X PATCH -d (form-encoded by default) switches LINE off and on', async () => {
    const { gateway } = await gatewayIn('curl');
    const curl = (enabled: boolean): { code: number | null; out: string } => {
      const result = spawnSync('curl', ['-sS', '-X', 'PATCH', '-H', `Authorization: Bearer ${WRITE_TOKEN}`, `${gateway.adminUrl}/v1/apps/line`, '-d', JSON.stringify({ enabled })], { encoding: 'utf8', timeout: 10_000 });
      return { code: result.status, out: result.stdout };
    };
    const off = curl(false);
    expect(off.code).toBe(0);
    expect(JSON.parse(off.out)).toMatchObject({ id: 'line', enabled: false });
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.addresses).toEqual([ALLOWED_ANSWER]);
    expect(JSON.parse(curl(true).out)).toMatchObject({ enabled: true });
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);
    await gateway.stop();
  });

  it('POST /v1/rules: a name answered (and cached) a moment ago is blocked right after the 201', async () => {
    const { gateway } = await gatewayIn('rule');
    expect((await resolveA(gateway.dnsPort, 'www.example-blocked.test'))?.addresses).toEqual([ALLOWED_ANSWER]);
    const added = await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'example-blocked.test', action: 'block' });
    expect(added.status).toBe(201);
    const ms = await waitFor(async () => (await resolveA(gateway.dnsPort, 'www.example-blocked.test'))?.rcode === NXDOMAIN, 1_000, 'the rule to block');
    expect(ms).toBeLessThan(100);
    console.log(`propagation, one gateway: rule added -> blocked ${ms.toFixed(1)} ms`);
    await gateway.stop();
  });
});

describe('durability', () => {
  it('one policy version: the API, the metric, the audit log and the nft file header agree after every change', async () => {
    const { gateway, home } = await gatewayIn('version', [], ['nftables: { file: HOME/ip.nft }']);
    const versions = async (): Promise<{ api: number; metric: number; nft: number }> => {
      const policy = (await api(gateway.adminUrl, 'GET', '/v1/policy')).body as { version: number };
      const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text();
      const metric = Number(/^portcullis_policy_version (\d+)$/m.exec(metrics)?.[1]);
      const nft = Number(/policy version (\d+)/.exec(await readFile(join(home, 'ip.nft'), 'utf8'))?.[1]);
      return { api: policy.version, metric, nft };
    };
    const lastAudited = async (): Promise<number> => {
      const lines = (await readFile(join(home, 'data', 'audit.jsonl'), 'utf8')).trim().split('\n');
      return (JSON.parse(lines.at(-1)!) as { version: number }).version;
    };
    const agree = async (): Promise<number> => {
      let seen = await versions();
      await waitFor(async () => {
        seen = await versions();
        return seen.nft === seen.api;
      }, 2_000, 'the nft file to catch up');
      expect(seen.metric).toBe(seen.api);
      expect(await lastAudited()).toBe(seen.api);
      return seen.api;
    };
    const added = await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'cidr', value: '198.51.100.0/24', action: 'block' });
    expect(added.status).toBe(201);
    const first = await agree();
    expect((await api(gateway.adminUrl, 'PATCH', '/v1/apps/didi', { enabled: false })).status).toBe(200);
    const second = await agree();
    expect((await api(gateway.adminUrl, 'DELETE', `/v1/rules/${(added.body as { id: string }).id}`)).status).toBe(204);
    const third = await agree();
    expect(second).toBeGreaterThan(first);
    expect(third).toBeGreaterThan(second);
    await gateway.stop();
  });

  it('kill -9 in the middle of 1,000 rule writes: every acknowledged write is there after a restart', async () => {
    const { gateway, config, home } = await gatewayIn('kill');
    const acknowledged = new Map<string, string>();
    let next = 0;
    const kill: { isDone: boolean } = { isDone: false };
    const isKillDue = (): boolean => acknowledged.size >= 400 && !kill.isDone;
    const worker = async (): Promise<void> => {
      while (next < 1_000 && !kill.isDone) {
        const value = `d${String(next++).padStart(4, '0')}.example`;
        try {
          const res = await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value, action: 'block' });
          if (res.status === 201) acknowledged.set(value, (res.body as { id: string }).id);
        } catch {
          // The process died under this request: not acknowledged.
        }
        if (isKillDue()) {
          kill.isDone = true;
          gateway.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, () => worker()));
    await gateway.exited;
    expect(acknowledged.size).toBeGreaterThanOrEqual(400);
    expect(acknowledged.size).toBeLessThan(1_000);

    const again = await restart(config);
    const rules = (await api(again.adminUrl, 'GET', '/v1/rules')).body as { id: string; value: string }[];
    const stored = new Map(rules.map((r) => [r.value, r.id]));
    for (const [value, id] of acknowledged) expect(stored.get(value), value).toBe(id);
    expect(new Set(rules.map((r) => r.id)).size).toBe(rules.length);
    // The audit log has a line for every acknowledged write (a line cut by the kill is skipped).
    const audit = (await readFile(join(home, 'data', 'audit.jsonl'), 'utf8')).split('\n').filter((l) => l.startsWith('{') && l.endsWith('}'));
    const audited = new Set(audit.map((l) => (JSON.parse(l) as { after: { value?: string } | null }).after?.value));
    for (const value of acknowledged.keys()) expect(audited.has(value), value).toBe(true);
    await again.stop();
  });

  it('a corrupt store refuses to start, naming the file; --recover starts from the previous copy', async () => {
    const { gateway, config, home } = await gatewayIn('corrupt');
    await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'kept-one.example', action: 'block' });
    await api(gateway.adminUrl, 'POST', '/v1/rules', { type: 'domain', value: 'kept-two.example', action: 'block' });
    await gateway.stop();
    const policyFile = join(home, 'data', 'policy.json');
    await writeFile(policyFile, '{"version": 3, "apps": {');

    const refused = runCli(['start', '--config', config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PCL_ERR_STORE_CORRUPT');
    expect(refused.stderr).toContain(policyFile);
    expect(refused.stderr).toContain('--recover');

    const recovered = await restart(config, ['--recover']);
    const rules = (await api(recovered.adminUrl, 'GET', '/v1/rules')).body as { value: string }[];
    // The previous copy is the state before the last write: the first rule is there.
    expect(rules.map((r) => r.value)).toContain('kept-one.example');
    expect((await readdir(join(home, 'data'))).some((f) => f.startsWith('policy.json.corrupt-'))).toBe(true);
    await recovered.stop();
  });
});

describe('CLI parity: apps and rules through the API', () => {
  let gateway: GatewayProcess;
  let config = '';

  beforeAll(async () => {
    ({ gateway, config } = await gatewayIn('cli'));
  });

  it('apps disable / enable with --url and --token, and with PORTCULLIS_URL / PORTCULLIS_TOKEN', async () => {
    const off = runCli(['apps', 'disable', 'line', '--url', gateway.adminUrl, '--token', WRITE_TOKEN]);
    expect(off.code, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/line: disabled/);
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.addresses).toEqual([ALLOWED_ANSWER]);
    // The offline check reads the stored state too.
    expect(runCli(['check', LINE_NAME, '--config', config]).code).toBe(0);

    const on = runCli(['apps', 'enable', 'line'], { PORTCULLIS_URL: gateway.adminUrl, PORTCULLIS_TOKEN: WRITE_TOKEN });
    expect(on.code, on.stderr).toBe(0);
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);
    expect(runCli(['check', LINE_NAME, '--config', config]).code).toBe(3);
  });

  it('rules add, ls, ls --json, rm', () => {
    const env = { PORTCULLIS_URL: gateway.adminUrl, PORTCULLIS_TOKEN: WRITE_TOKEN };
    const added = runCli(['rules', 'add', 'domain', 'cli-rule.test', '--comment', 'from the cli'], env);
    expect(added.code, added.stderr).toBe(0);
    const id = /added (r[0-9]+): block domain cli-rule\.test/.exec(added.stdout)?.[1];
    expect(id).toBeDefined();
    expect(runCli(['check', 'www.cli-rule.test', '--config', config]).code).toBe(3);
    expect(runCli(['rules', 'ls'], env).stdout).toContain(`${id!}\tblock\tdomain\tcli-rule.test\t-\tfrom the cli`);
    const listed = JSON.parse(runCli(['rules', 'ls', '--json'], env).stdout) as { id: string; comment: string }[];
    expect(listed).toContainEqual(expect.objectContaining({ id, comment: 'from the cli' }));
    const removed = runCli(['rules', 'rm', id!], env);
    expect(removed.code, removed.stderr).toBe(0);
    expect((JSON.parse(runCli(['rules', 'ls', '--json'], env).stdout) as { id: string }[]).map((r) => r.id)).not.toContain(id);
  });

  it('errors: a read token cannot write (exit 1, PCL_ERR_FORBIDDEN); an unreachable API exits 1 with PCL_ERR_API', () => {
    const forbidden = runCli(['rules', 'add', 'domain', 'nope.test', '--url', gateway.adminUrl, '--token', READ_TOKEN]);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toContain('PCL_ERR_FORBIDDEN');
    const unreachable = runCli(['apps', 'disable', 'line', '--url', 'http://127.0.0.1:1', '--token', WRITE_TOKEN]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('PCL_ERR_API');
    const invalid = runCli(['rules', 'add', 'cidr', '10.0.0.1/8', '--url', gateway.adminUrl, '--token', WRITE_TOKEN]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('PCL_ERR_INVALID_CIDR');
  });

  it('SIGHUP names each changed key that needs a restart, in the log, /readyz and /v1/policy; reverting clears it', async () => {
    const original = await readFile(config, 'utf8');
    const changed = original.replace('  listen: 127.0.0.1:0\n  upstreams', '  listen: 127.0.0.2:0\n  blockMode: refused\n  upstreams');
    expect(changed).not.toBe(original);
    await writeFile(config, changed);
    const before = gateway.logs.length;
    gateway.child.kill('SIGHUP');
    await waitFor(() => Promise.resolve(gateway.logs.slice(before).some((l) => l.msg === 'reloaded; a restart is pending')), 5_000, 'the reload');
    const warned = gateway.logs.slice(before).filter((l) => l.level === 40).map((l) => l.key);
    expect(warned).toEqual(['dns.blockMode', 'dns.listen']);
    const ready = (await (await fetch(`${gateway.adminUrl}/readyz`)).json()) as { ready: boolean; restartPending: string[] };
    expect(ready).toMatchObject({ ready: true, restartPending: ['dns.blockMode', 'dns.listen'] });
    expect(((await api(gateway.adminUrl, 'GET', '/v1/policy')).body as { restartPending: string[] }).restartPending).toEqual(['dns.blockMode', 'dns.listen']);
    // Still the running listener and block mode: nothing half-applied.
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);
    await writeFile(config, original);
    const again = gateway.logs.length;
    gateway.child.kill('SIGHUP');
    await waitFor(() => Promise.resolve(gateway.logs.slice(again).some((l) => l.msg === 'reloaded')), 5_000, 'the second reload');
    expect(((await (await fetch(`${gateway.adminUrl}/readyz`)).json()) as { restartPending: string[] }).restartPending).toEqual([]);
  });

  it('SIGHUP rotates admin tokens and keeps serving; SIGTERM exits 0', async () => {
    const rotated = 'rotated-token-0123456789abcdef';
    await writeFile(config, (await readFile(config, 'utf8')).replace(WRITE_TOKEN, rotated));
    const before = gateway.logs.length; // earlier tests reloaded too: wait for this reload's line
    gateway.child.kill('SIGHUP');
    await waitFor(() => Promise.resolve(gateway.logs.slice(before).some((l) => l.msg === 'reloaded')), 5_000, 'the reload');
    expect((await resolveA(gateway.dnsPort, LINE_NAME))?.rcode).toBe(NXDOMAIN);
    expect((await api(gateway.adminUrl, 'GET', '/v1/apps', undefined, WRITE_TOKEN)).status).toBe(401);
    expect((await api(gateway.adminUrl, 'GET', '/v1/apps', undefined, rotated)).status).toBe(200);
    expect(await gateway.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(dir, 'cli', 'data', 'policy.json'))).toBe(true);
  });
});

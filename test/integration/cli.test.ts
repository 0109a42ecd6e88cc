import { spawn, spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digOne } from '../support/dns-clients.js';
import { startFakeUpstream, type FakeRecord, type FakeUpstream } from '../support/fake-upstream.js';
import { api, startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { KAKAO_GSLB_CHAINS } from '../support/gslb-chains.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 15_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('portcullis check', () => {
  it.each([
    ['talk-pilsner.kakao.com', 3, 'kakaotalk', 'domain:kakao.com', 'dns'],
    ['legy-jp.line-apps.com:443', 3, 'line', 'domain:line-apps.com', 'dns'],
    ['147.92.150.1', 3, 'line', 'cidr:147.92.128.0/17', 'ip'],
    ['[2400:dcc0::1]:443', 3, 'line', 'cidr:2400:dcc0::/32', 'ip'],
    ['notkakao.com', 0, null, null, 'dns'],
    ['www.naver.com', 0, null, null, 'dns'],
    ['api.push.apple.com', 0, null, null, 'dns'],
    ['www.didiglobal.com', 0, null, null, 'dns'],
  ])('%s exits %i', (target, code, app, rule, layer) => {
    const result = run(['check', target, '--json']);
    expect(result.code, result.stderr).toBe(code);
    expect(JSON.parse(result.stdout)).toEqual({ target, verdict: code === 3 ? 'block' : 'allow', app, rule, layer });
  });

  it('prints a readable verdict without --json', () => {
    const result = run(['check', 'talk-pilsner.kakao.com']);
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/blocked: talk-pilsner\.kakao\.com: kakaotalk \(domain:kakao\.com/);
  });

  it('exits 1 on a target that is neither a name nor an address', () => {
    for (const target of ['bad..name', 'a b', 'host:99999']) {
      const result = run(['check', target]);
      expect(result.code, target).toBe(1);
      expect(result.stderr).not.toBe('');
    }
    expect(run(['check']).code).toBe(1);
  });

  it('follows the config: an app left out of policy.apps is not blocked', async () => {
    const config = join(dir, 'kakao-only.yaml');
    await writeFile(config, 'policy:\n  apps: [kakaotalk]\n');
    expect(run(['check', 'legy-jp.line-apps.com', '--config', config]).code).toBe(0);
    expect(run(['check', 'talk.kakao.com', '--config', config]).code).toBe(3);
    expect(run(['check', 'talk.kakao.com'], { PORTCULLIS_POLICY_APPS: 'line' }).code).toBe(0);
  });

  it('applies local extra lists, with an app tag', async () => {
    const listFile = join(dir, 'didi.txt');
    await writeFile(listFile, '# operator-verified Didi endpoints\ndidi-chat.example\n');
    const config = join(dir, 'lists.yaml');
    await writeFile(config, `policy:\n  lists:\n    - { source: ${listFile}, app: didi }\n`);
    const result = run(['check', 'x.didi-chat.example', '--config', config, '--json']);
    expect(result.code).toBe(3);
    expect(JSON.parse(result.stdout)).toMatchObject({ app: 'didi', rule: 'domain:didi-chat.example' });
  });
});

/** The CLI without blocking this process: the fake upstream it asks lives here. */
function runAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Kakao's shared GSLB zone and a LINE address, as public DNS answers them. */
const CHAINS: Record<string, FakeRecord[]> = {
  ...KAKAO_GSLB_CHAINS,
  'media.partner-gateway.example': [{ type: 'A', value: '147.92.150.1' }],
  'www.naver.com': [{ type: 'A', value: '203.0.113.12' }],
};

describe('portcullis check --resolve: the DNS path, step by step', () => {
  let upstream: FakeUpstream;
  let config = '';
  let gateway: GatewayProcess;
  beforeAll(async () => {
    upstream = await startFakeUpstream(CHAINS);
    config = await writeGatewayConfig(dir, { upstream: upstream.target });
    gateway = await startGateway(config);
  }, 30_000);
  afterAll(async () => {
    await gateway.stop();
    await upstream.close();
  });

  it('www.daum.net: allowed, through its CNAME into Kakao\'s GSLB zone', async () => {
    const result = await runAsync(['check', 'www.daum.net', '--resolve', '--config', config]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^allowed: www\.daum\.net: no rule matches\n/);
    expect(result.stdout).toMatch(/ {2}query +www\.daum\.net +allow\n/);
    expect(result.stdout).toMatch(/ {2}cname +www-daum-uj2suuqw\.kgslb\.com \(A\) +allow\n/);
    expect(result.stdout).toMatch(/ {2}address +211\.249\.220\.24 \(A\) +allow\n/);
    expect(result.stdout).toContain('answers: A NOERROR: allowed; AAAA NOERROR: allowed');
  });

  it('katalk.kakao.com: blocked by its name, and its CNAME target is KakaoTalk\'s own GSLB label', async () => {
    const result = await runAsync(['check', 'katalk.kakao.com', '--resolve', '--config', config, '--json']);
    expect(result.code, result.stderr).toBe(3);
    expect(JSON.parse(result.stdout)).toMatchObject({
      target: 'katalk.kakao.com',
      verdict: 'block',
      app: 'kakaotalk',
      rule: 'domain:kakao.com',
      layer: 'dns',
      chain: [
        { kind: 'query', target: 'katalk.kakao.com', qtype: null, verdict: 'block', rule: 'domain:kakao.com' },
        { kind: 'cname', target: 'katalk-fo6ld96d.kgslb.com', qtype: 'A', verdict: 'block', app: 'kakaotalk', rule: 'domain:katalk-*.kgslb.com' },
        { kind: 'address', target: '211.249.219.27', qtype: 'A', verdict: 'allow', rule: null },
      ],
    });
  });

  it('says what the DNS path does, name by name: check --resolve and dig through the gateway agree', async () => {
    const names = [...Object.keys(CHAINS), 'use-application-dns.net', 'talk-pilsner.kakao.com'];
    for (const name of names) {
      const [checked, answered] = await Promise.all([runAsync(['check', name, '--resolve', '--config', config, '--json']), digOne(gateway.dnsPort, [name, 'A'])]);
      const isBlockedByDns = answered.status === 'NXDOMAIN' && (answered.ede?.code === 15 || name === 'use-application-dns.net');
      expect({ name, blocked: checked.code === 3 }).toEqual({ name, blocked: isBlockedByDns });
    }
    // And the blocked outsiders are blocked on their answers, as the chain shows.
    const viaCname = JSON.parse((await runAsync(['check', 'chat.partner-gateway.example', '--resolve', '--config', config, '--json'])).stdout) as { rule: string };
    expect(viaCname.rule).toBe('domain:katalk-*.kgslb.com');
    const viaAddress = JSON.parse((await runAsync(['check', 'media.partner-gateway.example', '--resolve', '--config', config, '--json'])).stdout) as { rule: string };
    expect(viaAddress.rule).toBe('cidr:147.92.128.0/17');
  });

  it('GET /v1/check?resolve=1 gives the same chain; an address target with resolve is a 400', async () => {
    const res = await api(gateway.adminUrl, 'GET', '/v1/check?target=jvvp.tistory.com&resolve=1');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      verdict: 'allow',
      chain: [
        { kind: 'query', target: 'jvvp.tistory.com' },
        { kind: 'cname', target: 'wildcard-tistory-fz0x1pwf.kgslb.com', verdict: 'allow' },
        { kind: 'address', target: '211.249.222.33', verdict: 'allow' },
      ],
      answers: [
        { qtype: 'A', rcode: 'NOERROR', verdict: 'allow' },
        { qtype: 'AAAA', rcode: 'NOERROR', verdict: 'allow' },
      ],
    });
    const bad = await api(gateway.adminUrl, 'GET', '/v1/check?target=147.92.150.1&resolve=1');
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toMatch(/problem\+json/);
  });

  it('--resolve with every upstream down: exit 1, the answers say why', async () => {
    const result = await runAsync(['check', 'www.naver.com', '--resolve', '--json'], { PORTCULLIS_DNS_UPSTREAMS: '127.0.0.1:1' });
    expect(result.code).toBe(1);
    const body = JSON.parse(result.stdout) as { answers: { rcode: string | null; error: string | null }[] };
    expect(body.answers.every((a) => a.rcode === null && a.error !== null)).toBe(true);
  });
});

describe('portcullis validate', () => {
  it('accepts the defaults', () => {
    const result = run(['validate']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/valid/);
  });

  it('names the file, line and field of an unknown key', async () => {
    const config = join(dir, 'unknown.yaml');
    await writeFile(config, 'dns:\n  listen: 127.0.0.1:5353\n  upstream: [1.1.1.1:53]\n');
    const result = run(['validate', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${config}:3 (dns.upstream): unknown key`);
  });

  it('names the file, line and field of a bad CIDR', async () => {
    const config = join(dir, 'cidr.yaml');
    await writeFile(config, 'proxy:\n  allowedUpstreamNetworks:\n    - 10.0.0.0/8\n    - 10.20.0.0/33\n');
    const result = run(['validate', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${config}:4 (proxy.allowedUpstreamNetworks[1])`);
    expect(result.stderr).toMatch(/10\.20\.0\.0\/33/);
  });

  it('names the list file and line of a list entry the gateway skips, as a warning', async () => {
    const listFile = join(dir, 'bad-list.txt');
    await writeFile(listFile, 'good.example\nbad..example\n');
    const config = join(dir, 'badlist.yaml');
    await writeFile(config, `policy:\n  lists: [${listFile}]\n`);
    const result = run(['validate', '--config', config]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`warning: ${listFile}:2`);
  });

  it('reports a missing config file', () => {
    const result = run(['validate', '--config', join(dir, 'nope.yaml')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/nope\.yaml: cannot read/);
  });
});

describe('portcullis apps', () => {
  it('lists the five apps and says which have no verified endpoints', async () => {
    const result = run(['apps']);
    expect(result.code).toBe(0);
    for (const id of ['kakaotalk', 'line', 'didi', 'talkbox', 'vower']) expect(result.stdout).toMatch(new RegExp(`^${id}\\s`, 'm'));
    expect(result.stdout).toMatch(/^didi .*no verified endpoints/m);
    const bundledVersion = /^version: (\d+)$/m.exec(await readFile(fileURLToPath(new URL('../../blocklists/catalog.yaml', import.meta.url)), 'utf8'))?.[1];
    expect(result.stdout.split('\n')[0]).toBe(`catalog version ${bundledVersion}, bundled with this build`);
  });

  it('--json gives ids, enabled state and rule counts', () => {
    const result = run(['apps', '--json']);
    const apps = JSON.parse(result.stdout) as { id: string; enabled: boolean; rules: { domains: number; cidrs: number; ports: number }; coverage: string }[];
    expect(apps.map((a) => a.id)).toEqual(['kakaotalk', 'line', 'didi', 'talkbox', 'vower']);
    expect(apps.every((a) => a.enabled)).toBe(true);
    expect(apps.find((a) => a.id === 'line')!.rules.cidrs).toBeGreaterThan(10);
    expect(apps.find((a) => a.id === 'vower')!.coverage).toBe('none');
  });
});

describe('portcullis catalog build|sign|verify', () => {
  const keys = (name: string): { key: string; pub: string } => {
    const key = join(dir, `${name}.key`);
    const pub = join(dir, `${name}.pub`);
    expect(spawnSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', key]).status).toBe(0);
    expect(spawnSync('openssl', ['pkey', '-in', key, '-pubout', '-out', pub]).status).toBe(0);
    return { key, pub };
  };

  it('builds the bundled catalog, signs it with an openssl Ed25519 key and verifies it; another key is refused', async () => {
    const publisher = keys('publisher');
    const other = keys('other');
    const payload = join(dir, 'payload.json');
    const bundle = join(dir, 'catalog.bundle');
    const built = run(['catalog', 'build', '--bundle-version', '2999010101', '--expires', '7d', '--out', payload]);
    expect(built.code, built.stderr).toBe(0);
    const signed = run(['catalog', 'sign', payload, '--key', publisher.key, '--out', bundle]);
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stderr).toMatch(/signed catalog version 2999010101 with sha256:[0-9a-f]{16}/);
    const verified = run(['catalog', 'verify', bundle, '--key', publisher.pub]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^valid: catalog version 2999010101, issued \S+, expires \S+, 5 apps with \d+ entries, signed by sha256:/);
    const refused = run(['catalog', 'verify', bundle, '--key', other.pub]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^refused \(bad-signature\): signature check failed: signed by key sha256:\w+, not the configured sha256:\w+/);
    // The key the gateway is configured with is the default for verify.
    const config = join(dir, 'catalog-verify.yaml');
    await writeFile(config, `policy:\n  catalog: { url: "https://catalog.example.net/c.bundle", publicKey: ${publisher.pub} }\n`);
    expect(run(['catalog', 'verify', bundle, '--config', config]).code).toBe(0);
  });

  it('refuses to build a catalog the gateway would refuse, naming file and line; refuses to sign with a key that is not Ed25519', async () => {
    const broken = join(dir, 'broken-catalog');
    await cp(fileURLToPath(new URL('../../blocklists/', import.meta.url)), broken, { recursive: true });
    const file = join(broken, 'line.yaml');
    await writeFile(file, (await readFile(file, 'utf8')).replace(/\n {2}source: [^\n]+\n/, '\n'));
    const built = run(['catalog', 'build', '--dir', broken, '--out', join(dir, 'never.json')]);
    expect(built.code).toBe(1);
    expect(built.stderr).toMatch(/line\.yaml:\d+ \(domains\[\d+\]\.source\): expected required property/);
    const rsa = join(dir, 'rsa.key');
    expect(spawnSync('openssl', ['genpkey', '-algorithm', 'rsa', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsa]).status).toBe(0);
    const payload = join(dir, 'payload-rsa.json');
    expect(run(['catalog', 'build', '--out', payload]).code).toBe(0);
    const signed = run(['catalog', 'sign', payload, '--key', rsa]);
    expect(signed.code).toBe(1);
    expect(signed.stderr).toMatch(/Ed25519 private key is needed, this is rsa/);
  });
});

describe('portcullis start', () => {
  it('logs JSON, reloads on SIGHUP and exits 0 on SIGTERM', async () => {
    const config = join(dir, 'start.yaml');
    const listeners = 'dns:\n  listen: 127.0.0.1:0\n  upstreams: [127.0.0.1:9]\nproxy:\n  tls: { listen: 127.0.0.1:0 }\n  http: { listen: 127.0.0.1:0 }\n';
    await writeFile(config, `${listeners}store:\n  path: ${join(dir, 'data')}\n`);
    const child = spawn(process.execPath, [CLI, 'start', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: Record<string, unknown>[] = [];
    const waitFor = (msg: string): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`no "${msg}" log line; got ${JSON.stringify(lines)}`));
        }, 10_000);
        const check = (): void => {
          const found = lines.find((l) => l.msg === msg);
          if (found !== undefined) {
            clearTimeout(timer);
            resolve(found);
          } else setTimeout(check, 20);
        };
        check();
      });
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const started = await waitFor('portcullis started');
    expect(started.apps).toEqual(expect.arrayContaining(['kakaotalk', 'line']));
    await writeFile(config, `${listeners}store:\n  path: ${join(dir, 'data')}\npolicy:\n  apps: [kakaotalk]\n`);
    child.kill('SIGHUP');
    const reloaded = await waitFor('reloaded');
    expect(reloaded.version).toBeGreaterThan(started.version as number);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('refuses to start on an invalid config, exit 1', async () => {
    const config = join(dir, 'broken.yaml');
    await writeFile(config, 'dns:\n  listen: nowhere\n');
    const result = run(['start', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/dns\.listen/);
  });
});

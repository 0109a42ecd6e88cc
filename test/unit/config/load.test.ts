import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_KEYS, DEFAULTS, loadConfig, loadConfigChecked, type LoadOptions, type LoadResult, type Problem } from '../../../src/config/index.js';
import { rejection } from '../../support/rejection.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-config-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a config file from its lines (line N of the file is lines[N - 1]) and returns its path. */
async function writeConfig(lines: readonly string[], name = 'config.yaml'): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

/** Loads with an empty environment unless one is given, so the test runner's env never leaks in. */
function load(options: LoadOptions = {}): Promise<LoadResult> {
  return loadConfigChecked({ env: {}, cwd: dir, ...options });
}

async function loadFile(lines: readonly string[], options: LoadOptions = {}): Promise<{ file: string; result: LoadResult }> {
  const file = await writeConfig(lines);
  return { file, result: await load({ file, ...options }) };
}

function valid(result: LoadResult) {
  expect(result.problems).toEqual([]);
  expect(result.config).not.toBeNull();
  return result.config!;
}

function onlyProblem(result: LoadResult): Problem {
  expect(result.config).toBeNull();
  expect(result.problems).toHaveLength(1);
  return result.problems[0]!;
}


describe('loadConfigChecked: defaults', () => {
  it('starts on the CONTRACT defaults when there is no file and no ./portcullis.yaml', async () => {
    const config = valid(await load());
    expect(config).toEqual({
      source: 'defaults',
      dns: {
        listen: '127.0.0.1:5353',
        upstreams: ['1.1.1.1:53'],
        upstreamCa: null,
        blockMode: 'nxdomain',
        negativeTtlSec: 60,
        allowClients: null,
        rateLimit: { perSecond: 200, burst: 400, action: 'refused', maxClients: 100_000 },
        tcp: { idleTimeoutMs: 10_000, maxConnections: 1000, maxPipelined: 100 },
        cache: { maxEntries: 100_000, maxBytes: 64 * 1024 * 1024, serveStale: true },
        bypass: { firefoxCanary: true, dohResolvers: false, stripEch: true },
        tls: null,
        dot: null,
        doh: null,
        workers: 1,
        udpBatching: true,
      },
      proxy: {
        tls: { listen: '127.0.0.1:8443', upstreamPort: 443 },
        http: { listen: '127.0.0.1:8080', upstreamPort: 80 },
        hosts: {},
        allowedUpstreamNetworks: [],
        blockAction: 'alert',
        maxConnections: 10_000,
        maxConnectionsPerClient: 256,
        clientHelloTimeoutMs: 10_000,
        clientHelloMaxBytes: 65_536,
        httpMaxHeadBytes: 16_384,
        connectTimeoutMs: 5_000,
        idleTimeoutMs: 300_000,
        halfClosedTimeoutMs: 15_000,
        allowClients: null,
        transparent: null,
      },
      admin: { listen: '127.0.0.1:9090', tokens: [], decisions: { kept: 1000, clientAddresses: false, names: true } },
      store: { path: join(dir, 'data'), redis: null },
      policy: { apps: ['kakaotalk', 'line', 'didi', 'talkbox', 'vower'], extended: [], lists: [], catalog: null },
      nftables: null,
      log: { level: 'info' },
    });
  });

  it('gives every caller its own arrays, so changing one config cannot change the defaults', async () => {
    const first = valid(await load());
    first.dns.upstreams.push('9.9.9.9:53');
    first.policy.apps.pop();
    const second = valid(await load());
    expect(second.dns.upstreams).toEqual(['1.1.1.1:53']);
    expect(second.policy.apps).toHaveLength(5);
    expect(DEFAULTS.dnsUpstreams).toEqual(['1.1.1.1:53']);
  });

  it('treats an empty file or one with only comments as "all defaults"', async () => {
    const empty = valid((await loadFile([''])).result);
    const comments = valid((await loadFile(['# nothing to change yet', '# dns:', '#   listen: 0.0.0.0:53'])).result);
    for (const config of [empty, comments]) {
      expect(config.dns.listen).toBe('127.0.0.1:5353');
      expect(config.policy.apps).toEqual(['kakaotalk', 'line', 'didi', 'talkbox', 'vower']);
    }
  });

  it('fills the keys a file leaves out from the defaults', async () => {
    const { result } = await loadFile(['proxy:', '  tls:', '    listen: 127.0.0.1:9443']);
    const config = valid(result);
    expect(config.proxy.tls).toEqual({ listen: '127.0.0.1:9443', upstreamPort: 443 });
    expect(config.proxy.http).toEqual({ listen: '127.0.0.1:8080', upstreamPort: 80 });
    expect(config.dns.upstreams).toEqual(['1.1.1.1:53']);
  });
});

describe('loadConfigChecked: which file', () => {
  it('picks up ./portcullis.yaml from the working directory', async () => {
    await writeConfig(['dns:', '  listen: 127.0.0.1:5300'], 'portcullis.yaml');
    const config = valid(await load());
    expect(config.source).toBe('portcullis.yaml');
    expect(config.dns.listen).toBe('127.0.0.1:5300');
  });

  it('honours PORTCULLIS_CONFIG (relative to the working directory) over ./portcullis.yaml', async () => {
    await writeConfig(['dns:', '  listen: 127.0.0.1:5300'], 'portcullis.yaml');
    await writeConfig(['dns:', '  listen: 127.0.0.1:5400'], 'etc/gateway.yaml');
    const config = valid(await load({ env: { PORTCULLIS_CONFIG: 'etc/gateway.yaml' } }));
    expect(config.source).toBe('etc/gateway.yaml');
    expect(config.dns.listen).toBe('127.0.0.1:5400');
  });

  it('lets --config win over PORTCULLIS_CONFIG', async () => {
    await writeConfig(['dns:', '  listen: 127.0.0.1:5400'], 'from-env.yaml');
    const file = await writeConfig(['dns:', '  listen: 127.0.0.1:5500'], 'from-flag.yaml');
    const config = valid(await load({ file, env: { PORTCULLIS_CONFIG: 'from-env.yaml' } }));
    expect(config.dns.listen).toBe('127.0.0.1:5500');
  });

  it('reports a named file that does not exist instead of falling back to defaults', async () => {
    const problem = onlyProblem(await load({ file: 'missing.yaml' }));
    expect(problem.file).toBe('missing.yaml');
    expect(problem.message).toMatch(/^cannot read: .*ENOENT/);
  });

  it('resolves store.path and admin token files against the config file directory, not the working directory', async () => {
    const file = await writeConfig(
      ['store:', '  path: state', 'admin:', '  tokens:', '    - name: ops', '      tokenFile: secrets/ops.token', '      scopes: [read, write]'],
      'etc/portcullis.yaml',
    );
    const config = valid(await load({ file }));
    expect(config.store.path).toBe(join(dir, 'etc', 'state'));
    expect(config.admin.tokens).toEqual([{ name: 'ops', token: null, tokenFile: join(dir, 'etc', 'secrets', 'ops.token'), scopes: ['read', 'write'] }]);
  });

  it('keeps an absolute store.path as written', async () => {
    const { result } = await loadFile(['store:', '  path: /var/lib/portcullis']);
    expect(valid(result).store.path).toBe('/var/lib/portcullis');
  });
});

describe('loadConfigChecked: problems in the file', () => {
  it('names the file, field and line of an unknown top-level key', async () => {
    const { file, result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353', 'verbose: true']);
    expect(onlyProblem(result)).toEqual({ file, field: 'verbose', line: 3, message: 'unknown key' });
  });

  it('names the file, field and line of a misspelt nested key', async () => {
    const { file, result } = await loadFile(['# gateway', 'proxy:', '  tls:', '    listen: 127.0.0.1:8443', 'dns:', '  upstreams: [1.1.1.1:53]', '  lisen: 127.0.0.1:53']);
    expect(onlyProblem(result)).toEqual({ file, field: 'dns.lisen', line: 7, message: 'unknown key; did you mean "listen"?' });
  });

  it('points at the key line when the unknown key holds a nested block', async () => {
    const { result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353', 'dsn:', '', '  # moved here by mistake', '  listen: 127.0.0.1:53']);
    expect(onlyProblem(result)).toMatchObject({ field: 'dsn', line: 3 });
  });

  it('names an unknown key inside a list entry with its index', async () => {
    const { file, result } = await loadFile(['policy:', '  lists:', '    - ./a.txt', '    - source: ./b.txt', '      acton: allow']);
    expect(onlyProblem(result)).toEqual({ file, field: 'policy.lists[1].acton', line: 5, message: 'unknown key; did you mean "action"?' });
  });

  it('rejects a quoted string for upstreamPort', async () => {
    const { file, result } = await loadFile(['proxy:', '  tls:', '    upstreamPort: "443"']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'proxy.tls.upstreamPort', line: 3 });
    expect(problem.message).toMatch(/integer/);
  });

  it('rejects an upstreamPort outside 1-65535', async () => {
    const { result } = await loadFile(['proxy:', '  http:', '    upstreamPort: 0']);
    expect(onlyProblem(result)).toMatchObject({ field: 'proxy.http.upstreamPort', line: 3 });
  });

  it('rejects a list where one listen address belongs', async () => {
    const { file, result } = await loadFile(['dns:', '  listen: [127.0.0.1:53, 127.0.0.2:53]']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'dns.listen', line: 2 });
    expect(problem.message).toMatch(/string/);
  });

  it('rejects an invalid CIDR in allowedUpstreamNetworks and suggests the network for host bits', async () => {
    const { file, result } = await loadFile(['proxy:', '  allowedUpstreamNetworks:', '    - 10.0.0.0/8', '    - 192.168.1.1/24', '    - fd00::/8', '    - not-a-network']);
    expect(result.config).toBeNull();
    expect(result.problems).toHaveLength(2);
    const [hostBits, garbage] = result.problems;
    expect(hostBits).toMatchObject({ file, field: 'proxy.allowedUpstreamNetworks[1]', line: 4 });
    expect(hostBits!.message).toContain('did you mean 192.168.1.0/24?');
    expect(garbage).toMatchObject({ file, field: 'proxy.allowedUpstreamNetworks[3]', line: 6 });
    expect(garbage!.message).toContain('not-a-network');
  });

  it.each([
    ['::1:5353', /write IPv6 addresses as \[address\]:port/],
    ['127.0.0.1', /expected host:port/],
    ['127.0.0.1:70000', /port must be 1-65535/],
    ['127.0.0.1:dns', /port is not a number/],
    ['gateway.lan:5353', /"gateway\.lan" must be an IP address/],
  ])('rejects dns.listen %s with a reason', async (listen, reason) => {
    const { file, result } = await loadFile(['log:', '  level: info', 'dns:', `  listen: "${listen}"`]);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'dns.listen', line: 4 });
    expect(problem.message).toMatch(reason);
  });

  it.each([
    ['proxy.tls.listen', ['proxy:', '  tls:', '    listen: 127.0.0.1']],
    ['proxy.http.listen', ['proxy:', '  http:', '    listen: 127.0.0.1']],
    ['admin.listen', ['admin:', '  tokens: []', '  listen: 127.0.0.1']],
  ])('checks %s as a listen address too', async (field, lines) => {
    const { result } = await loadFile(lines);
    expect(onlyProblem(result)).toMatchObject({ field, line: 3, message: '"127.0.0.1": expected host:port' });
  });

  it('accepts [v6]:port and localhost as listen addresses', async () => {
    const { result } = await loadFile(['dns:', '  listen: "[::1]:5353"', 'admin:', '  listen: localhost:9090']);
    const config = valid(result);
    expect(config.dns.listen).toBe('[::1]:5353');
    expect(config.admin.listen).toBe('localhost:9090');
  });

  it('rejects an upstream given as a host name, since the resolver cannot look up its own upstream', async () => {
    const { file, result } = await loadFile(['dns:', '  upstreams:', '    - 9.9.9.9', '    - dns.google:53']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'dns.upstreams[1]', line: 4 });
    expect(problem.message).toMatch(/"dns\.google" must be an IP address/);
  });

  it('accepts upstreams without a port and in [v6]:port form', async () => {
    const { result } = await loadFile(['dns:', '  upstreams: [9.9.9.9, "[2606:4700:4700::1111]:53"]']);
    expect(valid(result).dns.upstreams).toEqual(['9.9.9.9', '[2606:4700:4700::1111]:53']);
  });

  it('accepts DoT and DoH upstreams; names the field of one given by host name or with an unknown scheme', async () => {
    const { result } = await loadFile(['dns:', '  upstreams: ["tls://9.9.9.9#dns.quad9.net", "https://8.8.8.8/dns-query#dns.google"]', '  upstreamCa: ca.pem']);
    const config = valid(result);
    expect(config.dns.upstreams).toEqual(['tls://9.9.9.9#dns.quad9.net', 'https://8.8.8.8/dns-query#dns.google']);
    expect(config.dns.upstreamCa).toMatch(/\/ca\.pem$/);
    const bad = await loadFile(['dns:', '  upstreams: ["https://dns.google/dns-query", "quic://1.1.1.1"]']);
    expect(bad.result.problems.map((p) => [p.field, p.line])).toEqual([
      ['dns.upstreams[0]', 2],
      ['dns.upstreams[1]', 2],
    ]);
    expect(bad.result.problems[0]?.message).toMatch(/must be an IP address/);
    expect(bad.result.problems[1]?.message).toMatch(/unknown scheme/);
  });

  it('rejects an empty upstream list', async () => {
    const { result } = await loadFile(['dns:', '  upstreams: []']);
    expect(onlyProblem(result)).toMatchObject({ field: 'dns.upstreams', line: 2 });
  });

  it('rejects a proxy.hosts entry whose value is not an IP address', async () => {
    const { file, result } = await loadFile(['proxy:', '  hosts:', '    talk.example.com: 10.0.0.7', '    chat.example.com: 300.1.1.1']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, line: 4 });
    expect(problem.field).toContain('chat.example.com');
    expect(problem.message).toBe('"300.1.1.1" is not an IP address');
  });

  it('rejects a proxy.hosts entry whose key is not a host name', async () => {
    const { result } = await loadFile(['proxy:', '  hosts:', '    "bad name!": 10.0.0.7']);
    expect(onlyProblem(result).message).toContain('is not a valid host name');
  });

  it('requires exactly one of token and tokenFile', async () => {
    const { file, result } = await loadFile([
      'admin:',
      '  tokens:',
      '    - name: ops',
      '      token: 0123456789abcdef0123',
      '      tokenFile: ./ops.token',
      '      scopes: [read]',
      '    - name: viewer',
      '      scopes: [read]',
    ]);
    expect(result.config).toBeNull();
    expect(result.problems).toEqual([
      { file, field: 'admin.tokens[0]', line: 3, message: 'give exactly one of token and tokenFile' },
      { file, field: 'admin.tokens[1]', line: 7, message: 'give exactly one of token and tokenFile' },
    ]);
  });

  it('rejects an admin token shorter than 16 characters', async () => {
    const { result } = await loadFile(['admin:', '  tokens:', '    - name: ops', '      token: secret', '      scopes: [read]']);
    expect(onlyProblem(result)).toMatchObject({ field: 'admin.tokens[0].token', line: 4 });
  });

  it('rejects an unknown app id in policy.apps and names the known ones', async () => {
    const { file, result } = await loadFile(['policy:', '  apps:', '    - kakaotalk', '    - whatsapp']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'policy.apps[1]', line: 4 });
    expect(problem.message).toContain('whatsapp');
    for (const id of ['kakaotalk', 'line', 'didi', 'talkbox', 'vower']) expect(problem.message).toContain(id);
  });

  it('rejects the same app twice in policy.apps', async () => {
    const { result } = await loadFile(['policy:', '  apps: [line, line]']);
    expect(onlyProblem(result)).toMatchObject({ field: 'policy.apps', line: 2 });
  });

  it('rejects a list action other than block or allow and names the choices', async () => {
    const { result } = await loadFile(['policy:', '  lists:', '    - source: ./a.txt', '      action: deny']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ field: 'policy.lists[0].action', line: 4 });
    expect(problem.message).toMatch(/block, allow/);
  });

  it.each([
    ['30s', ['      refresh: 30s']],
    ['59 (seconds)', ['      refresh: 59']],
  ])('rejects a list refresh of %s, below the one-minute minimum', async (_label, refreshLine) => {
    const { file, result } = await loadFile(['policy:', '  lists:', '    - source: https://lists.example.com/ads.txt', ...refreshLine]);
    expect(onlyProblem(result)).toEqual({ file, field: 'policy.lists[0].refresh', line: 4, message: 'refresh must be at least 60s' });
  });

  it('reads policy.catalog: a key file relative to the config, the PEM inline, refresh default 1h', async () => {
    const { file, result } = await loadFile(['policy:', '  catalog: { url: "https://catalog.example.net/p.bundle", publicKey: keys/catalog.pub, ca: ca.pem }']);
    expect(valid(result).policy.catalog).toEqual({ url: 'https://catalog.example.net/p.bundle', publicKey: join(dir, 'keys', 'catalog.pub'), refreshMs: 3_600_000, ca: join(dir, 'ca.pem') });
    expect(file.startsWith(dir)).toBe(true);
    const pem = '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----';
    const inline = await loadFile(['policy:', '  catalog:', '    url: https://catalog.example.net/p.bundle', '    publicKey: |', ...pem.split('\n').map((l) => `      ${l}`), '    refresh: 5s']);
    expect(valid(inline.result).policy.catalog).toMatchObject({ publicKey: `${pem}\n`, refreshMs: 5_000 });
  });

  it.each([
    [['  catalog: { url: "http://catalog.example.net/p.bundle", publicKey: k.pub }'], 'policy.catalog.url', /https/],
    [['  catalog: { url: "https://catalog.example.net/p.bundle", publicKey: k.pub, refresh: 1s }'], 'policy.catalog.refresh', /at least 5s/],
  ])('refuses policy.catalog %j with one problem naming the field', async (lines, field, message) => {
    const { file, result } = await loadFile(['policy:', ...lines]);
    expect(onlyProblem(result)).toMatchObject({ file, field, line: 2, message: expect.stringMatching(message) as unknown });
  });

  it('refuses policy.catalog without a publicKey: an unsigned catalog source is never trusted', async () => {
    const { result } = await loadFile(['policy:', '  catalog: { url: "https://catalog.example.net/p.bundle" }']);
    expect(result.config).toBeNull();
    expect(result.problems[0]).toMatchObject({ field: 'policy.catalog.publicKey', message: 'expected required property' });
  });

  it('accepts a list refresh of exactly the minimum', async () => {
    const { result } = await loadFile(['policy:', '  lists:', '    - source: https://lists.example.com/ads.txt', '      refresh: 1m']);
    expect(valid(result).policy.lists[0]!.refreshMs).toBe(60_000);
  });

  it('rejects a list refresh longer than a timer can wait, which would otherwise refetch at once, over and over', async () => {
    // setTimeout fires after 1 ms for any delay above 2^31-1 ms (~24.8 days).
    const { file, result } = await loadFile(['policy:', '  lists:', '    - source: https://lists.example.com/ads.txt', '      refresh: 30d']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'policy.lists[0].refresh', line: 4 });
    expect(problem.message).toMatch(/at most/);
    const longest = await loadFile(['policy:', '  lists:', '    - source: https://lists.example.com/ads.txt', '      refresh: 24d']);
    expect(valid(longest.result).policy.lists[0]!.refreshMs).toBeLessThanOrEqual(2 ** 31 - 1);
  });

  it('rejects a list refresh that is not a duration', async () => {
    const { result } = await loadFile(['policy:', '  lists:', '    - source: ./a.txt', '      refresh: daily']);
    expect(onlyProblem(result)).toMatchObject({ field: 'policy.lists[0].refresh', line: 4 });
  });

  it('rejects list URLs other than http(s)', async () => {
    const { file, result } = await loadFile(['policy:', '  lists:', '    - https://lists.example.com/ok.txt', '    - ftp://lists.example.com/ads.txt']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'policy.lists[1]', line: 4 });
    expect(problem.message).toContain('ftp://lists.example.com/ads.txt');
    expect(problem.message).toContain('http(s)');
  });

  it('rejects a store.redis that is not a redis:// URL', async () => {
    const { result } = await loadFile(['store:', '  redis: localhost:6379']);
    expect(onlyProblem(result)).toMatchObject({ field: 'store.redis', line: 2 });
  });

  it('reports a YAML syntax error with its line as the location, naming the file once', async () => {
    const { file, result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353', '\tupstreams: [1.1.1.1:53]']);
    const problem = onlyProblem(result);
    expect(problem.file).toBe(file);
    expect(problem.line).toBe(3);
    expect(problem.message).toMatch(/tab/i);
    const error = await rejection(loadConfig({ file, env: {}, cwd: dir }));
    expect(error.message.startsWith(`${file}:3: `)).toBe(true);
    expect(error.message.split(file)).toHaveLength(2);
  });

  it('reports mis-indented YAML at the offending line', async () => {
    const { result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353', ' upstreams: [1.1.1.1:53]']);
    expect(onlyProblem(result).line).toBe(3);
  });

  it('rejects a duplicate key instead of silently keeping one of the values', async () => {
    const { file, result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353', '  listen: 0.0.0.0:53']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, line: 3 });
    expect(problem.message).toMatch(/unique/);
  });

  it('rejects a file that is not a mapping', async () => {
    const { result } = await loadFile(['- dns', '- proxy']);
    expect(result.config).toBeNull();
    expect(result.problems[0]!.message).toMatch(/object/);
  });

  it('reports every problem of a file at once, not just the first', async () => {
    const { result } = await loadFile([
      'dns:',
      '  listen: 127.0.0.1',
      '  upstreams: [dns.google]',
      'proxy:',
      '  allowedUpstreamNetworks: [10.0.0.1/8]',
      'policy:',
      '  lists: [ftp://x.example/list]',
    ]);
    expect(result.config).toBeNull();
    expect(result.problems.map((p) => [p.field, p.line]).sort((a, b) => Number(a[1]) - Number(b[1]))).toEqual([
      ['dns.listen', 2],
      ['dns.upstreams[0]', 3],
      ['proxy.allowedUpstreamNetworks[0]', 5],
      ['policy.lists[0]', 7],
    ]);
  });
});

describe('loadConfigChecked: admin API exposure', () => {
  it('refuses a non-loopback admin.listen without tokens, naming the field', async () => {
    const { file, result } = await loadFile(['admin:', '  listen: 0.0.0.0:9090']);
    const problem = onlyProblem(result);
    expect(problem).toMatchObject({ file, field: 'admin.listen' });
    expect(problem.message).toMatch(/without admin\.tokens/);
  });

  it('accepts a non-loopback admin.listen once a token is configured, and loopback without one', async () => {
    const withToken = await loadFile(['admin:', '  listen: 0.0.0.0:9090', '  tokens:', '    - { name: ops, token: 0123456789abcdef, scopes: [admin] }']);
    expect(valid(withToken.result).admin.listen).toBe('0.0.0.0:9090');
    expect(valid((await loadFile(['admin:', '  listen: 127.0.0.1:9191'])).result).admin.tokens).toEqual([]);
  });

  it('the same rule holds for an env override of the listen address', async () => {
    const result = await load({ env: { PORTCULLIS_ADMIN_LISTEN: '[::]:9090' } });
    expect(result.config).toBeNull();
    expect(result.problems.map((p) => p.message).join('\n')).toMatch(/without admin\.tokens/);
  });
});

describe('loadConfigChecked: environment overrides', () => {
  it('applies PORTCULLIS_DNS_LISTEN over the file', async () => {
    const { result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353'], { env: { PORTCULLIS_DNS_LISTEN: '127.0.0.1:53' } });
    expect(valid(result).dns.listen).toBe('127.0.0.1:53');
  });

  it('reads PORTCULLIS_DNS_UPSTREAMS as a comma list and trims the entries', async () => {
    const config = valid(await load({ env: { PORTCULLIS_DNS_UPSTREAMS: '9.9.9.9:53, 149.112.112.112:53 ,[2620:fe::fe]:53' } }));
    expect(config.dns.upstreams).toEqual(['9.9.9.9:53', '149.112.112.112:53', '[2620:fe::fe]:53']);
  });

  it('reads a list as JSON when it starts with [', async () => {
    const config = valid(await load({ env: { PORTCULLIS_DNS_UPSTREAMS: '["9.9.9.9:53"]' } }));
    expect(config.dns.upstreams).toEqual(['9.9.9.9:53']);
  });

  it('reads PORTCULLIS_PROXY_TLS_UPSTREAM_PORT as a number and keeps the file siblings', async () => {
    const { result } = await loadFile(['proxy:', '  tls:', '    listen: 127.0.0.1:9443'], { env: { PORTCULLIS_PROXY_TLS_UPSTREAM_PORT: '8443' } });
    expect(valid(result).proxy.tls).toEqual({ listen: '127.0.0.1:9443', upstreamPort: 8443 });
  });

  it('reads PORTCULLIS_POLICY_APPS as a comma list of app ids', async () => {
    const config = valid(await load({ env: { PORTCULLIS_POLICY_APPS: 'line,didi' } }));
    expect(config.policy.apps).toEqual(['line', 'didi']);
  });

  it('reads PORTCULLIS_PROXY_HOSTS as JSON', async () => {
    const config = valid(await load({ env: { PORTCULLIS_PROXY_HOSTS: '{"talk.example.com":"10.0.0.7","chat.example.com":"fd00::7"}' } }));
    expect(config.proxy.hosts).toEqual({ 'talk.example.com': '10.0.0.7', 'chat.example.com': 'fd00::7' });
  });

  it('reports an unknown PORTCULLIS_ variable as a problem naming it', async () => {
    const problem = onlyProblem(await load({ env: { PORTCULLIS_FOO: '1' } }));
    expect(problem).toEqual({ file: 'env PORTCULLIS_FOO', message: 'unknown setting' });
  });

  it('reports a misspelt setting variable rather than ignoring it', async () => {
    const problem = onlyProblem(await load({ env: { PORTCULLIS_DNS_LISTENS: '0.0.0.0:53' } }));
    expect(problem.file).toBe('env PORTCULLIS_DNS_LISTENS');
  });

  it('reports a bad env value against the env var, not the file that also sets the key', async () => {
    const { result } = await loadFile(['dns:', '  listen: 127.0.0.1:5353'], { env: { PORTCULLIS_DNS_LISTEN: '::1:53' } });
    const problem = onlyProblem(result);
    expect(problem.file).toBe('env PORTCULLIS_DNS_LISTEN');
    expect(problem.field).toBe('dns.listen');
    expect(problem.line).toBeUndefined();
    expect(problem.message).toMatch(/\[address\]:port/);
  });

  it('reports a non-numeric port from env against the env var', async () => {
    const { result } = await loadFile(['proxy:', '  tls:', '    upstreamPort: 443'], { env: { PORTCULLIS_PROXY_TLS_UPSTREAM_PORT: 'https' } });
    expect(onlyProblem(result)).toMatchObject({ file: 'env PORTCULLIS_PROXY_TLS_UPSTREAM_PORT', field: 'proxy.tls.upstreamPort' });
  });

  it('reports malformed JSON in PORTCULLIS_PROXY_HOSTS against the env var', async () => {
    expect(onlyProblem(await load({ env: { PORTCULLIS_PROXY_HOSTS: '{talk.example.com: 10.0.0.7}' } }))).toMatchObject({
      file: 'env PORTCULLIS_PROXY_HOSTS',
      field: 'proxy.hosts',
    });
  });

  it('reports a bad IP inside PORTCULLIS_PROXY_HOSTS against the env var', async () => {
    const problem = onlyProblem(await load({ env: { PORTCULLIS_PROXY_HOSTS: '{"talk.example.com":"10.0.0.300"}' } }));
    expect(problem.file).toBe('env PORTCULLIS_PROXY_HOSTS');
    expect(problem.message).toContain('10.0.0.300');
  });

  it('reports an unknown app in PORTCULLIS_POLICY_APPS against the env var', async () => {
    expect(onlyProblem(await load({ env: { PORTCULLIS_POLICY_APPS: 'line,whatsapp' } }))).toMatchObject({
      file: 'env PORTCULLIS_POLICY_APPS',
      field: 'policy.apps[1]',
    });
  });

  it('does not treat PORTCULLIS_CONFIG, PORTCULLIS_URL and PORTCULLIS_TOKEN as settings', async () => {
    const file = await writeConfig(['dns:', '  listen: 127.0.0.1:5300']);
    const config = valid(await load({ env: { PORTCULLIS_CONFIG: file, PORTCULLIS_URL: 'http://127.0.0.1:9090', PORTCULLIS_TOKEN: 'not-a-setting' } }));
    expect(config.dns.listen).toBe('127.0.0.1:5300');
  });

  it('ignores variables without the PORTCULLIS_ prefix', async () => {
    const config = valid(await load({ env: { HOME: '/root', PATH: '/usr/bin', DNS_LISTEN: 'nonsense', portcullis_dns_listen: 'nonsense' } }));
    expect(config.dns.listen).toBe('127.0.0.1:5353');
  });
});

describe('loadConfigChecked: flag overrides', () => {
  it('lets a flag beat env, and env beat the file', async () => {
    const file = await writeConfig(['dns:', '  listen: 127.0.0.1:1001', 'admin:', '  listen: 127.0.0.1:1002']);
    const config = valid(
      await load({
        file,
        env: { PORTCULLIS_DNS_LISTEN: '127.0.0.1:2001', PORTCULLIS_ADMIN_LISTEN: '127.0.0.1:2002' },
        overrides: { 'dns.listen': '127.0.0.1:3001' },
      }),
    );
    expect(config.dns.listen).toBe('127.0.0.1:3001');
    expect(config.admin.listen).toBe('127.0.0.1:2002');
  });

  it('coerces flag text to the key type', async () => {
    const config = valid(await load({ overrides: { 'proxy.http.upstreamPort': '8081', 'dns.upstreams': '9.9.9.9:53,1.0.0.1:53' } }));
    expect(config.proxy.http.upstreamPort).toBe(8081);
    expect(config.dns.upstreams).toEqual(['9.9.9.9:53', '1.0.0.1:53']);
  });

  it('reports an unknown flag key as a problem naming the flag', async () => {
    expect(onlyProblem(await load({ overrides: { 'x.y': '1' } }))).toEqual({ file: 'flag --x.y', message: 'unknown setting' });
  });

  it('reports a bad flag value against the flag even when env sets the same key', async () => {
    const problem = onlyProblem(await load({ env: { PORTCULLIS_DNS_LISTEN: '127.0.0.1:53' }, overrides: { 'dns.listen': '127.0.0.1:70000' } }));
    expect(problem).toMatchObject({ file: 'flag --dns.listen', field: 'dns.listen' });
    expect(problem.message).toMatch(/1-65535/);
  });
});

describe('loadConfigChecked: policy.lists', () => {
  it('accepts string and object entries and fills in their defaults', async () => {
    const file = await writeConfig(
      [
        'policy:',
        '  lists:',
        '    - lists/ads.txt',
        '    - https://lists.example.com/hosts.txt',
        '    - /srv/lists/abs.txt',
        '    - source: ../shared/allow.txt',
        '      action: allow',
        '      app: line',
        '      format: domains',
        '      refresh: 2h',
        '    - source: https://lists.example.com/cidr.txt',
        '      name: corp-cidrs',
        '      format: cidr',
        '      refresh: 3600',
      ],
      'etc/portcullis.yaml',
    );
    const lists = valid(await load({ file })).policy.lists;
    expect(lists.map((list) => ({ ...list, name: undefined }))).toEqual([
      { source: join(dir, 'etc', 'lists', 'ads.txt'), format: 'auto', action: 'block', app: null, refreshMs: 86_400_000, isRemote: false },
      { source: 'https://lists.example.com/hosts.txt', format: 'auto', action: 'block', app: null, refreshMs: 86_400_000, isRemote: true },
      { source: '/srv/lists/abs.txt', format: 'auto', action: 'block', app: null, refreshMs: 86_400_000, isRemote: false },
      { source: join(dir, 'shared', 'allow.txt'), format: 'domains', action: 'allow', app: 'line', refreshMs: 7_200_000, isRemote: false },
      { source: 'https://lists.example.com/cidr.txt', format: 'cidr', action: 'block', app: null, refreshMs: 3_600_000, isRemote: true },
    ]);
    expect(lists[4]!.name).toBe('corp-cidrs');
  });

  it('gives lists with the same file name different default names, safe as file names', async () => {
    const { result } = await loadFile(['policy:', '  lists:', '    - a/hosts.txt', '    - b/hosts.txt', '    - https://lists.example.com/hosts.txt?key=s3cr%20t&v=2']);
    const names = valid(result).policy.lists.map((l) => l.name);
    expect(new Set(names).size).toBe(3);
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
      expect(name.startsWith('hosts.txt')).toBe(true);
    }
    expect(names[2]).not.toContain('s3cr');
  });

  it('keeps default names stable across loads and config locations, so cached downloads are found again', async () => {
    const first = await writeConfig(['policy:', '  lists: [lists/ads.txt, "https://lists.example.com/a.txt"]'], 'one/portcullis.yaml');
    const second = await writeConfig(['policy:', '  lists: [lists/ads.txt, "https://lists.example.com/a.txt"]'], 'two/portcullis.yaml');
    const namesOf = async (file: string) => valid(await load({ file })).policy.lists.map((l) => l.name);
    const names = await namesOf(first);
    expect(await namesOf(first)).toEqual(names);
    expect(await namesOf(second)).toEqual(names);
  });

  it('rejects two lists that end up with the same name', async () => {
    const { file, result } = await loadFile(['policy:', '  lists:', '    - source: a.txt', '      name: mine', '    - source: b.txt', '      name: mine']);
    expect(onlyProblem(result)).toEqual({ file, field: 'policy.lists[1]', line: 5, message: 'two lists are named "mine"' });
  });

  it('resolves relative list paths from env against the config file directory as well', async () => {
    const file = await writeConfig(['log:', '  level: warn'], 'etc/portcullis.yaml');
    const config = valid(await load({ file, env: { PORTCULLIS_POLICY_LISTS: 'lists/a.txt,https://lists.example.com/b.txt' } }));
    expect(config.policy.lists.map((l) => l.source)).toEqual([join(dir, 'etc', 'lists', 'a.txt'), 'https://lists.example.com/b.txt']);
  });
});

describe('loadConfig', () => {
  it('returns the checked config when it is valid', async () => {
    const file = await writeConfig(['dns:', '  listen: 127.0.0.1:5300']);
    const config = await loadConfig({ file, env: {}, cwd: dir });
    expect(config.dns.listen).toBe('127.0.0.1:5300');
  });

  it('throws PCL_ERR_CONFIG_INVALID listing every problem with file, line and field', async () => {
    const file = await writeConfig(['dns:', '  listen: 127.0.0.1', 'proxy:', '  allowedUpstreamNetworks: [10.0.0.1/8]', '  hosts:', '    talk.example.com: nope']);
    const error = await rejection(loadConfig({ file, env: {}, cwd: dir }));
    expect(error.code).toBe('PCL_ERR_CONFIG_INVALID');
    const lines = error.message.split('\n').sort();
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(`${file}:2 (dns.listen): "127.0.0.1": expected host:port`);
    expect(lines[1]).toMatch(new RegExp(`^${escape(file)}:4 \\(proxy\\.allowedUpstreamNetworks\\[0\\]\\): .*did you mean 10\\.0\\.0\\.0/8\\?$`));
    expect(lines[2]).toBe(`${file}:6 (proxy.hosts.talk.example.com): "nope" is not an IP address`);
    expect(error.details.problems).toHaveLength(3);
  });

  it('lists env and flag problems by their origin', async () => {
    const error = await rejection(loadConfig({ env: { PORTCULLIS_FOO: '1' }, overrides: { 'dns.lisen': 'x' }, cwd: dir }));
    expect(error.code).toBe('PCL_ERR_CONFIG_INVALID');
    expect(error.message.split('\n')).toEqual(['env PORTCULLIS_FOO: unknown setting', 'flag --dns.lisen: unknown setting']);
  });
});

describe('CONFIG_KEYS', () => {
  it('has an env var for every config key, named PORTCULLIS_<SECTION>_<KEY>', () => {
    const byKey = Object.fromEntries(CONFIG_KEYS.map((leaf) => [leaf.path.join('.'), leaf.env]));
    expect(byKey).toEqual({
      'dns.listen': 'PORTCULLIS_DNS_LISTEN',
      'dns.upstreams': 'PORTCULLIS_DNS_UPSTREAMS',
      'dns.blockMode': 'PORTCULLIS_DNS_BLOCK_MODE',
      'dns.negativeTtl': 'PORTCULLIS_DNS_NEGATIVE_TTL',
      'dns.allowClients': 'PORTCULLIS_DNS_ALLOW_CLIENTS',
      'dns.rateLimit.perSecond': 'PORTCULLIS_DNS_RATE_LIMIT_PER_SECOND',
      'dns.rateLimit.burst': 'PORTCULLIS_DNS_RATE_LIMIT_BURST',
      'dns.rateLimit.action': 'PORTCULLIS_DNS_RATE_LIMIT_ACTION',
      'dns.tcp.idleTimeout': 'PORTCULLIS_DNS_TCP_IDLE_TIMEOUT',
      'dns.tcp.maxConnections': 'PORTCULLIS_DNS_TCP_MAX_CONNECTIONS',
      'dns.tcp.maxPipelined': 'PORTCULLIS_DNS_TCP_MAX_PIPELINED',
      'dns.cache.maxEntries': 'PORTCULLIS_DNS_CACHE_MAX_ENTRIES',
      'dns.cache.maxBytes': 'PORTCULLIS_DNS_CACHE_MAX_BYTES',
      'dns.cache.serveStale': 'PORTCULLIS_DNS_CACHE_SERVE_STALE',
      'dns.bypass.firefoxCanary': 'PORTCULLIS_DNS_BYPASS_FIREFOX_CANARY',
      'dns.bypass.dohResolvers': 'PORTCULLIS_DNS_BYPASS_DOH_RESOLVERS',
      'dns.bypass.stripEch': 'PORTCULLIS_DNS_BYPASS_STRIP_ECH',
      'dns.tls.cert': 'PORTCULLIS_DNS_TLS_CERT',
      'dns.tls.key': 'PORTCULLIS_DNS_TLS_KEY',
      'dns.dot.listen': 'PORTCULLIS_DNS_DOT_LISTEN',
      'dns.doh.listen': 'PORTCULLIS_DNS_DOH_LISTEN',
      'dns.doh.path': 'PORTCULLIS_DNS_DOH_PATH',
      'dns.workers': 'PORTCULLIS_DNS_WORKERS',
      'dns.udpBatching': 'PORTCULLIS_DNS_UDP_BATCHING',
      'dns.upstreamCa': 'PORTCULLIS_DNS_UPSTREAM_CA',
      'proxy.tls.listen': 'PORTCULLIS_PROXY_TLS_LISTEN',
      'proxy.tls.upstreamPort': 'PORTCULLIS_PROXY_TLS_UPSTREAM_PORT',
      'proxy.http.listen': 'PORTCULLIS_PROXY_HTTP_LISTEN',
      'proxy.http.upstreamPort': 'PORTCULLIS_PROXY_HTTP_UPSTREAM_PORT',
      'proxy.hosts': 'PORTCULLIS_PROXY_HOSTS',
      'proxy.allowedUpstreamNetworks': 'PORTCULLIS_PROXY_ALLOWED_UPSTREAM_NETWORKS',
      'proxy.blockAction': 'PORTCULLIS_PROXY_BLOCK_ACTION',
      'proxy.maxConnections': 'PORTCULLIS_PROXY_MAX_CONNECTIONS',
      'proxy.maxConnectionsPerClient': 'PORTCULLIS_PROXY_MAX_CONNECTIONS_PER_CLIENT',
      'proxy.clientHelloTimeout': 'PORTCULLIS_PROXY_CLIENT_HELLO_TIMEOUT',
      'proxy.clientHelloMaxBytes': 'PORTCULLIS_PROXY_CLIENT_HELLO_MAX_BYTES',
      'proxy.httpMaxHeadBytes': 'PORTCULLIS_PROXY_HTTP_MAX_HEAD_BYTES',
      'proxy.connectTimeout': 'PORTCULLIS_PROXY_CONNECT_TIMEOUT',
      'proxy.idleTimeout': 'PORTCULLIS_PROXY_IDLE_TIMEOUT',
      'proxy.halfClosedTimeout': 'PORTCULLIS_PROXY_HALF_CLOSED_TIMEOUT',
      'proxy.allowClients': 'PORTCULLIS_PROXY_ALLOW_CLIENTS',
      'proxy.transparent.mode': 'PORTCULLIS_PROXY_TRANSPARENT_MODE',
      'proxy.transparent.tcp': 'PORTCULLIS_PROXY_TRANSPARENT_TCP',
      'proxy.transparent.quic': 'PORTCULLIS_PROXY_TRANSPARENT_QUIC',
      'proxy.transparent.firstDataTimeout': 'PORTCULLIS_PROXY_TRANSPARENT_FIRST_DATA_TIMEOUT',
      'proxy.transparent.quicIdleTimeout': 'PORTCULLIS_PROXY_TRANSPARENT_QUIC_IDLE_TIMEOUT',
      'proxy.transparent.quicMaxFlows': 'PORTCULLIS_PROXY_TRANSPARENT_QUIC_MAX_FLOWS',
      'admin.listen': 'PORTCULLIS_ADMIN_LISTEN',
      'admin.tokens': 'PORTCULLIS_ADMIN_TOKENS',
      'admin.decisions.kept': 'PORTCULLIS_ADMIN_DECISIONS_KEPT',
      'admin.decisions.clientAddresses': 'PORTCULLIS_ADMIN_DECISIONS_CLIENT_ADDRESSES',
      'admin.decisions.names': 'PORTCULLIS_ADMIN_DECISIONS_NAMES',
      'store.path': 'PORTCULLIS_STORE_PATH',
      'store.redis': 'PORTCULLIS_STORE_REDIS',
      'policy.apps': 'PORTCULLIS_POLICY_APPS',
      'policy.extended': 'PORTCULLIS_POLICY_EXTENDED',
      'policy.lists': 'PORTCULLIS_POLICY_LISTS',
      'policy.catalog.url': 'PORTCULLIS_POLICY_CATALOG_URL',
      'policy.catalog.publicKey': 'PORTCULLIS_POLICY_CATALOG_PUBLIC_KEY',
      'policy.catalog.refresh': 'PORTCULLIS_POLICY_CATALOG_REFRESH',
      'policy.catalog.ca': 'PORTCULLIS_POLICY_CATALOG_CA',
      'nftables.file': 'PORTCULLIS_NFTABLES_FILE',
      'nftables.apply': 'PORTCULLIS_NFTABLES_APPLY',
      'nftables.table': 'PORTCULLIS_NFTABLES_TABLE',
      'log.level': 'PORTCULLIS_LOG_LEVEL',
    });
  });

  it('never collides with the variables the CLI reads for itself', () => {
    const envNames = CONFIG_KEYS.map((leaf) => leaf.env);
    expect(new Set(envNames).size).toBe(envNames.length);
    for (const reserved of ['PORTCULLIS_CONFIG', 'PORTCULLIS_URL', 'PORTCULLIS_TOKEN']) expect(envNames).not.toContain(reserved);
  });

  it('is accepted by the loader under every env name it lists', async () => {
    const values: Record<string, string> = {
      PORTCULLIS_DNS_LISTEN: '127.0.0.1:53',
      PORTCULLIS_DNS_UPSTREAMS: '9.9.9.9:53',
      PORTCULLIS_DNS_BLOCK_MODE: 'null',
      PORTCULLIS_DNS_NEGATIVE_TTL: '30',
      PORTCULLIS_DNS_ALLOW_CLIENTS: '127.0.0.0/8,10.0.0.0/8',
      PORTCULLIS_DNS_RATE_LIMIT_PER_SECOND: '50',
      PORTCULLIS_DNS_RATE_LIMIT_BURST: '100',
      PORTCULLIS_DNS_RATE_LIMIT_ACTION: 'drop',
      PORTCULLIS_DNS_TCP_IDLE_TIMEOUT: '5s',
      PORTCULLIS_DNS_TCP_MAX_CONNECTIONS: '200',
      PORTCULLIS_DNS_TCP_MAX_PIPELINED: '10',
      PORTCULLIS_DNS_CACHE_MAX_ENTRIES: '5000',
      PORTCULLIS_DNS_CACHE_MAX_BYTES: '1048576',
      PORTCULLIS_DNS_CACHE_SERVE_STALE: 'false',
      PORTCULLIS_DNS_BYPASS_FIREFOX_CANARY: 'false',
      PORTCULLIS_DNS_BYPASS_DOH_RESOLVERS: 'true',
      PORTCULLIS_DNS_BYPASS_STRIP_ECH: 'false',
      PORTCULLIS_DNS_TLS_CERT: '/etc/portcullis/cert.pem',
      PORTCULLIS_DNS_TLS_KEY: '/etc/portcullis/key.pem',
      PORTCULLIS_DNS_DOT_LISTEN: '127.0.0.1:853',
      PORTCULLIS_DNS_DOH_LISTEN: '127.0.0.1:8053',
      PORTCULLIS_DNS_DOH_PATH: '/q',
      PORTCULLIS_DNS_WORKERS: '2',
      PORTCULLIS_DNS_UDP_BATCHING: 'false',
      PORTCULLIS_DNS_UPSTREAM_CA: '/etc/portcullis/upstream-ca.pem',
      PORTCULLIS_PROXY_TLS_LISTEN: '127.0.0.1:443',
      PORTCULLIS_PROXY_TLS_UPSTREAM_PORT: '8443',
      PORTCULLIS_PROXY_HTTP_LISTEN: '127.0.0.1:80',
      PORTCULLIS_PROXY_HTTP_UPSTREAM_PORT: '8080',
      PORTCULLIS_PROXY_HOSTS: '{"a.example.com":"10.0.0.1"}',
      PORTCULLIS_PROXY_ALLOWED_UPSTREAM_NETWORKS: '10.0.0.0/8,fd00::/8',
      PORTCULLIS_PROXY_BLOCK_ACTION: 'rst',
      PORTCULLIS_PROXY_MAX_CONNECTIONS: '100',
      PORTCULLIS_PROXY_MAX_CONNECTIONS_PER_CLIENT: '10',
      PORTCULLIS_PROXY_CLIENT_HELLO_TIMEOUT: '2s',
      PORTCULLIS_PROXY_CLIENT_HELLO_MAX_BYTES: '32768',
      PORTCULLIS_PROXY_HTTP_MAX_HEAD_BYTES: '8192',
      PORTCULLIS_PROXY_CONNECT_TIMEOUT: '3s',
      PORTCULLIS_PROXY_IDLE_TIMEOUT: '1m',
      PORTCULLIS_PROXY_HALF_CLOSED_TIMEOUT: '5s',
      PORTCULLIS_PROXY_ALLOW_CLIENTS: '10.0.0.0/8,fd00::/8',
      PORTCULLIS_PROXY_TRANSPARENT_MODE: 'tproxy',
      PORTCULLIS_PROXY_TRANSPARENT_TCP: '0.0.0.0:15001',
      PORTCULLIS_PROXY_TRANSPARENT_QUIC: '0.0.0.0:15443',
      PORTCULLIS_PROXY_TRANSPARENT_FIRST_DATA_TIMEOUT: '500ms',
      PORTCULLIS_PROXY_TRANSPARENT_QUIC_IDLE_TIMEOUT: '20s',
      PORTCULLIS_PROXY_TRANSPARENT_QUIC_MAX_FLOWS: '500',
      PORTCULLIS_NFTABLES_FILE: '/var/lib/portcullis/ip-layer.nft',
      PORTCULLIS_NFTABLES_APPLY: 'true',
      PORTCULLIS_NFTABLES_TABLE: 'gate',
      PORTCULLIS_ADMIN_LISTEN: '127.0.0.1:9999',
      PORTCULLIS_ADMIN_TOKENS: '[{"name":"ops","token":"0123456789abcdef","scopes":["admin"]}]',
      PORTCULLIS_ADMIN_DECISIONS_KEPT: '50',
      PORTCULLIS_ADMIN_DECISIONS_CLIENT_ADDRESSES: 'true',
      PORTCULLIS_ADMIN_DECISIONS_NAMES: 'false',
      PORTCULLIS_STORE_PATH: '/var/lib/portcullis',
      PORTCULLIS_STORE_REDIS: 'redis://127.0.0.1:6379/0',
      PORTCULLIS_POLICY_APPS: 'kakaotalk',
      PORTCULLIS_POLICY_EXTENDED: 'kakaotalk',
      PORTCULLIS_POLICY_LISTS: 'https://lists.example.com/a.txt',
      PORTCULLIS_POLICY_CATALOG_URL: 'https://catalog.example.com/portcullis.bundle',
      PORTCULLIS_POLICY_CATALOG_PUBLIC_KEY: '/etc/portcullis/catalog.pub',
      PORTCULLIS_POLICY_CATALOG_REFRESH: '6h',
      PORTCULLIS_POLICY_CATALOG_CA: '/etc/portcullis/catalog-ca.pem',
      PORTCULLIS_LOG_LEVEL: 'debug',
    };
    expect(Object.keys(values).sort()).toEqual(CONFIG_KEYS.map((leaf) => leaf.env).sort());
    const config = valid(await load({ env: values }));
    expect(config.proxy.allowedUpstreamNetworks).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(config.admin.tokens).toEqual([{ name: 'ops', token: '0123456789abcdef', tokenFile: null, scopes: ['admin'] }]);
    expect(config.store).toEqual({ path: '/var/lib/portcullis', redis: 'redis://127.0.0.1:6379/0' });
    expect(config.policy.extended).toEqual(['kakaotalk']);
    expect(config.policy.catalog).toEqual({ url: 'https://catalog.example.com/portcullis.bundle', publicKey: '/etc/portcullis/catalog.pub', refreshMs: 6 * 3_600_000, ca: '/etc/portcullis/catalog-ca.pem' });
    expect(config.log.level).toBe('debug');
    expect(config.proxy.transparent).toEqual({ mode: 'tproxy', tcp: '0.0.0.0:15001', quic: '0.0.0.0:15443', firstDataTimeoutMs: 500, quicIdleTimeoutMs: 20_000, quicMaxFlows: 500 });
    expect(config.nftables).toEqual({ file: '/var/lib/portcullis/ip-layer.nft', apply: true, table: 'gate' });
    expect(config.dns.upstreamCa).toBe('/etc/portcullis/upstream-ca.pem');
    expect(config.proxy).toMatchObject({
      blockAction: 'rst',
      maxConnections: 100,
      maxConnectionsPerClient: 10,
      clientHelloTimeoutMs: 2000,
      clientHelloMaxBytes: 32_768,
      httpMaxHeadBytes: 8192,
      connectTimeoutMs: 3000,
      idleTimeoutMs: 60_000,
      halfClosedTimeoutMs: 5000,
      allowClients: ['10.0.0.0/8', 'fd00::/8'],
    });
    expect(config.dns).toMatchObject({
      blockMode: 'nullip',
      negativeTtlSec: 30,
      allowClients: ['127.0.0.0/8', '10.0.0.0/8'],
      rateLimit: { perSecond: 50, burst: 100, action: 'drop' },
      tcp: { idleTimeoutMs: 5000, maxConnections: 200, maxPipelined: 10 },
      cache: { maxEntries: 5000, maxBytes: 1_048_576, serveStale: false },
      bypass: { firefoxCanary: false, dohResolvers: true, stripEch: false },
      dot: { listen: '127.0.0.1:853' },
      doh: { listen: '127.0.0.1:8053', path: '/q' },
      workers: 2,
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

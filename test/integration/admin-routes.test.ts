import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_IDS, loadBundledRelease } from '../../src/catalog/index.js';
import { CatalogUpdater } from '../../src/catalog/updater.js';
import { ActivitySampler, AuditLog, DecisionLog, PolicyControl, buildAdmin, initialState, loadTokens, type PolicyState } from '../../src/control/index.js';
import { FileStore } from '../../src/control/store/index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { PolicyEngine } from '../../src/policy/index.js';
import { exportNftables } from '../../src/policy/nft-export.js';

const READ = 'read-token-0123456789';
const WRITE = 'write-token-0123456789';
const ADMIN = 'admin-token-0123456789';
const LINE_NAME = 'legy-jp.line-apps.com';

let dir = '';
let app: FastifyInstance;
let open: FastifyInstance;
let engine: PolicyEngine;
let store: FileStore;
let decisions: DecisionLog;
/** Each test's requests come from their own address, so the failed-auth limit of one never bites another. */
let clientSeq = 0;

async function buildGateway(tokens: { name: string; token: string; scopes: ('read' | 'write' | 'admin')[] }[], subdir: string): Promise<{ app: FastifyInstance; engine: PolicyEngine; store: FileStore; decisions: DecisionLog }> {
  const path = join(dir, subdir);
  const catalog = new CatalogUpdater({ bundled: await loadBundledRelease(), updates: null, dir: path, logger: silentLogger });
  const gatewayEngine = new PolicyEngine({ catalog: catalog.release.catalog, categories: catalog.release.categories, apps: { enabled: new Set(APP_IDS), extended: new Set() } });
  const fileStore = new FileStore({ dir: path, logger: silentLogger });
  const audit = new AuditLog(path, silentLogger, 1000);
  const control = new PolicyControl({ store: fileStore, engine: gatewayEngine, audit, logger: silentLogger, extended: new Set() });
  await control.start(initialState(APP_IDS));
  await audit.open();
  const metrics = createMetrics(['127.0.0.1:53']);
  metrics.attach({
    engine: gatewayEngine,
    cache: () => ({ entries: 0, bytes: 0, maxEntries: 1, maxBytes: 1 }),
    upstreams: () => [],
    proxyActive: () => ({ tls: 0, http: 0, transparent: 0, quic: 0 }),
    storeHealthy: () => true,
    catalog: () => catalog.status(),
  });
  const log = new DecisionLog(100, false);
  const built = await buildAdmin({
    catalog,
    engine: gatewayEngine,
    control,
    tokens: await loadTokens(tokens.map((t) => ({ name: t.name, token: t.token, tokenFile: null, scopes: t.scopes }))),
    audit,
    decisions: log,
    metrics,
    logger: silentLogger,
    storeHealth: () => fileStore.health(),
    listenersReady: () => true,
    refreshLists: () => Promise.resolve([]),
    activity: new ActivitySampler(() => metrics.totals(), 10_000),
    storeKind: 'file',
  });
  return { app: built, engine: gatewayEngine, store: fileStore, decisions: log };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-admin-'));
  ({ app, engine, store, decisions } = await buildGateway(
    [
      { name: 'viewer', token: READ, scopes: ['read'] },
      { name: 'ops', token: WRITE, scopes: ['write'] },
      { name: 'root', token: ADMIN, scopes: ['admin'] },
    ],
    'main',
  ));
  ({ app: open } = await buildGateway([], 'open'));
});

afterAll(async () => {
  await app.close();
  await open.close();
  await rm(dir, { recursive: true, force: true });
});

interface Call {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  url: string;
  token?: string | null;
  authorization?: string;
  body?: unknown;
  headers?: Record<string, string>;
  remoteAddress?: string;
}

function call(target: FastifyInstance, c: Call): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { ...c.headers };
  if (c.authorization !== undefined) headers.authorization = c.authorization;
  else if (c.token !== undefined && c.token !== null) headers.authorization = `Bearer ${c.token}`;
  return target.inject({
    method: c.method,
    url: c.url,
    headers,
    remoteAddress: c.remoteAddress ?? `10.9.${Math.floor(++clientSeq / 250)}.${clientSeq % 250}`,
    ...(c.body === undefined ? {} : typeof c.body === 'string' ? { payload: c.body, headers: { ...headers, 'content-type': 'application/json' } } : { payload: c.body as object }),
  });
}

function problemOf(res: LightMyRequestResponse): { type: string; title: string; status: number; detail: string; code: string; problems?: { field: string; message: string }[] } {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json<{ type: string; title: string; status: number; detail: string; code: string }>();
  expect(body.status).toBe(res.statusCode);
  expect(body.type).toBe(`urn:portcullis:error:${body.code}`);
  expect(body.title).not.toBe('');
  expect(body.detail).not.toBe('');
  return body;
}

async function addRule(value: string, token = WRITE): Promise<{ id: string; etag: string }> {
  const res = await call(app, { method: 'POST', url: '/v1/rules', token, body: { type: 'domain', value, action: 'block' } });
  expect(res.statusCode, res.body).toBe(201);
  return { id: res.json<{ id: string }>().id, etag: String(res.headers.etag) };
}

const ROUTES: { method: Call['method']; url: string; scope: 'read' | 'write' | 'admin'; body?: unknown }[] = [
  { method: 'GET', url: '/v1/apps', scope: 'read' },
  { method: 'GET', url: '/v1/apps/line', scope: 'read' },
  { method: 'PATCH', url: '/v1/apps/didi', scope: 'write', body: { enabled: true } },
  { method: 'GET', url: '/v1/rules', scope: 'read' },
  { method: 'GET', url: '/v1/rules/r999999', scope: 'read' },
  { method: 'POST', url: '/v1/rules', scope: 'write', body: { type: 'domain', value: 'matrix.example', action: 'block' } },
  { method: 'DELETE', url: '/v1/rules/r999999', scope: 'write' },
  { method: 'GET', url: '/v1/check?target=talk.kakao.com', scope: 'read' },
  { method: 'GET', url: '/v1/policy', scope: 'read' },
  { method: 'GET', url: '/v1/decisions', scope: 'read' },
  { method: 'GET', url: '/v1/audit', scope: 'admin' },
  { method: 'POST', url: '/v1/lists/refresh', scope: 'write' },
];

describe('auth matrix: every /v1 route', () => {
  const cases = ROUTES.flatMap((route) => [
    { route, who: 'no token', authorization: undefined as string | undefined, token: null as string | null, expected: 401 },
    { route, who: 'wrong token, same length', authorization: undefined, token: `x${WRITE.slice(1)}`, expected: 401 },
    { route, who: 'wrong token, 3 characters', authorization: undefined, token: 'abc', expected: 401 },
    { route, who: 'wrong token, 500 characters', authorization: undefined, token: 'z'.repeat(500), expected: 401 },
    { route, who: 'Basic scheme', authorization: `Basic ${Buffer.from(`u:${WRITE}`).toString('base64')}`, token: null, expected: 401 },
    { route, who: 'read token', authorization: undefined, token: READ, expected: route.scope === 'read' ? 0 : 403 },
    { route, who: 'write token', authorization: undefined, token: WRITE, expected: route.scope === 'admin' ? 403 : 0 },
    { route, who: 'admin token', authorization: undefined, token: ADMIN, expected: 0 },
  ]);

  it.each(cases.map((c) => [`${c.route.method} ${c.route.url}`, c.who, c] as const))('%s with %s', async (_route, _who, c) => {
    const res = await call(app, { method: c.route.method, url: c.route.url, token: c.token, authorization: c.authorization, body: c.route.body });
    if (c.expected === 0) {
      // Authorised: whatever the route answers, it is not an auth refusal (nor a crash).
      expect([401, 403, 429, 500], res.body).not.toContain(res.statusCode);
      return;
    }
    expect(res.statusCode, res.body).toBe(c.expected);
    const problem = problemOf(res);
    if (c.expected === 401) {
      expect(problem.code).toBe('PCL_ERR_UNAUTHORIZED');
      expect(res.headers['www-authenticate']).toBe('Bearer');
    } else expect(problem.code).toBe('PCL_ERR_FORBIDDEN');
  });

  it('unauthenticated routes need no token: /healthz, /readyz, /metrics, /openapi.json', async () => {
    expect((await call(app, { method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await call(app, { method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ ready: true, checks: { listeners: true, policy: true, store: true } });
    const metrics = await call(app, { method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('portcullis_policy_version');
    const spec = (await call(app, { method: 'GET', url: '/openapi.json' })).json<{ openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { required?: string[] } }> } }>> }>();
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of ['/v1/apps', '/v1/apps/{id}', '/v1/rules', '/v1/rules/{id}', '/v1/check', '/v1/policy', '/v1/decisions', '/v1/audit']) expect(Object.keys(spec.paths)).toContain(path);
    expect(spec.paths['/v1/rules']!.post!.requestBody!.content['application/json']!.schema.required).toEqual(expect.arrayContaining(['type', 'value', 'action']));
  });
});

describe('no tokens configured: loopback only', () => {
  it('answers a loopback client without a token, with every scope', async () => {
    const res = await call(open, { method: 'PATCH', url: '/v1/apps/vower', remoteAddress: '127.0.0.1', body: { enabled: true } });
    expect(res.statusCode, res.body).toBe(200);
    expect((await call(open, { method: 'GET', url: '/v1/audit', remoteAddress: '::1' })).statusCode).toBe(200);
  });

  it('refuses any other client, reads and writes alike', async () => {
    for (const c of [
      { method: 'GET', url: '/v1/apps' },
      { method: 'PATCH', url: '/v1/apps/line', body: { enabled: false } },
    ] as const) {
      const res = await call(open, { ...c, remoteAddress: '192.168.1.20' });
      expect(res.statusCode).toBe(403);
      expect(problemOf(res).code).toBe('PCL_ERR_FORBIDDEN');
    }
  });
});

describe('changes take effect at once and are durable', () => {
  it('PATCH /v1/apps/line off lets LINE names through; on blocks them again', async () => {
    expect(engine.decide({ name: LINE_NAME, layer: 'dns' }).verdict).toBe('block');
    const off = await call(app, { method: 'PATCH', url: '/v1/apps/line', token: WRITE, body: { enabled: false } });
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json()).toMatchObject({ id: 'line', enabled: false });
    expect(engine.decide({ name: LINE_NAME, layer: 'dns' }).verdict).toBe('allow');
    const stored = JSON.parse(await readFile(store.path, 'utf8')) as PolicyState;
    expect(stored.apps.line).toBe(false);
    const on = await call(app, { method: 'PATCH', url: '/v1/apps/line', token: WRITE, body: { enabled: true } });
    expect(on.json()).toMatchObject({ enabled: true });
    expect(engine.decide({ name: LINE_NAME, layer: 'dns' }).verdict).toBe('block');
  });

  it('POST /v1/rules blocks the name before the 201 arrives; DELETE lets it through again', async () => {
    expect(engine.decide({ name: 'www.example.org', layer: 'dns' }).verdict).toBe('allow');
    const res = await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body: { type: 'domain', value: '*.Example.ORG', action: 'block', comment: 'test' } });
    expect(res.statusCode, res.body).toBe(201);
    const rule = res.json<{ id: string; value: string }>();
    expect(rule.id).toMatch(/^r[0-9]+$/);
    expect(rule.value).toBe('example.org');
    expect(res.headers.location).toBe(`/v1/rules/${rule.id}`);
    expect(engine.decide({ name: 'www.example.org', layer: 'dns' })).toMatchObject({ verdict: 'block', rule: 'domain:example.org' });
    const stored = JSON.parse(await readFile(store.path, 'utf8')) as PolicyState;
    expect(stored.rules.map((r) => r.id)).toContain(rule.id);

    const del = await call(app, { method: 'DELETE', url: `/v1/rules/${rule.id}`, token: WRITE });
    expect(del.statusCode).toBe(204);
    expect(engine.decide({ name: 'www.example.org', layer: 'dns' }).verdict).toBe('allow');
    const again = await call(app, { method: 'DELETE', url: `/v1/rules/${rule.id}`, token: WRITE });
    expect(again.statusCode).toBe(404);
    expect(problemOf(again).code).toBe('PCL_ERR_NOT_FOUND');
  });

  it('GET /v1/check answers like portcullis check --json', async () => {
    const res = await call(app, { method: 'GET', url: '/v1/check?target=147.92.150.1:443', token: READ });
    expect(res.json()).toEqual({ target: '147.92.150.1:443', verdict: 'block', app: 'line', rule: 'cidr:147.92.128.0/17', layer: 'ip' });
  });

  it('the audit log names the token that made each change, newest first', async () => {
    await call(app, { method: 'PATCH', url: '/v1/apps/talkbox', token: WRITE, body: { enabled: false } });
    await call(app, { method: 'PATCH', url: '/v1/apps/talkbox', token: ADMIN, body: { enabled: true } });
    const entries = (await call(app, { method: 'GET', url: '/v1/audit?limit=2', token: ADMIN })).json<{ actor: string; change: string; before: unknown; after: unknown }[]>();
    expect(entries).toEqual([
      expect.objectContaining({ actor: 'root', change: 'app', before: { app: 'talkbox', enabled: false }, after: { app: 'talkbox', enabled: true } }),
      expect.objectContaining({ actor: 'ops', change: 'app', before: { app: 'talkbox', enabled: true }, after: { app: 'talkbox', enabled: false } }),
    ]);
    const lines = (await readFile(join(dir, 'main', 'audit.jsonl'), 'utf8')).trim().split('\n');
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ actor: 'root', change: 'app' });
  });

  it('50 concurrent rule additions: 50 distinct ids, all stored, the version moved by exactly 50', async () => {
    const before = (await call(app, { method: 'GET', url: '/v1/policy', token: READ })).json<{ version: number }>().version;
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body: { type: 'domain', value: `burst${i}.example`, action: 'block' } })));
    expect(results.map((r) => r.statusCode)).toEqual(Array<number>(50).fill(201));
    const ids = new Set(results.map((r) => r.json<{ id: string }>().id));
    expect(ids.size).toBe(50);
    const listed = (await call(app, { method: 'GET', url: '/v1/rules', token: READ })).json<{ id: string }[]>();
    for (const id of ids) expect(listed.map((r) => r.id)).toContain(id);
    const stored = JSON.parse(await readFile(store.path, 'utf8')) as PolicyState;
    expect(stored.version).toBe(before + 50);
    expect(stored.rules.filter((r) => r.value.startsWith('burst'))).toHaveLength(50);
  });

  it('GET /v1/decisions: newest first, without client addresses', async () => {
    decisions.record({ layer: 'dns', app: 'line', rule: 'domain:line-apps.com', name: 'a.line-apps.com', client: '10.0.0.5' });
    decisions.record({ layer: 'tls', app: 'kakaotalk', rule: 'domain:kakao.com', name: 'b.kakao.com', client: '10.0.0.6' });
    const res = (await call(app, { method: 'GET', url: '/v1/decisions?limit=2', token: READ })).json<Record<string, unknown>[]>();
    expect(res.map((d) => d.name)).toEqual(['b.kakao.com', 'a.line-apps.com']);
    expect(res[0]).toMatchObject({ layer: 'tls', app: 'kakaotalk', rule: 'domain:kakao.com' });
    for (const d of res) expect(d).not.toHaveProperty('client');
  });
});

describe('admin rules hold together', () => {
  const postRule = (body: object) => call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body });
  const ipVerdict = (ip: string, port: number, proto: 'tcp' | 'udp') => engine.decide({ ip, port, proto, layer: 'ip' }).verdict;

  it('two global port rules are both in force on IPv4 and IPv6 (check, proxy and the nft export agree); removing the newer keeps the older', async () => {
    const tcp = await postRule({ type: 'port', value: 'tcp/5222', action: 'block' });
    const udp = await postRule({ type: 'port', value: 'udp/3478', action: 'block' });
    expect([tcp.statusCode, udp.statusCode]).toEqual([201, 201]);
    for (const ip of ['8.8.8.8', '2001:db8::1']) {
      expect(ipVerdict(ip, 5222, 'tcp')).toBe('block');
      expect(ipVerdict(ip, 3478, 'udp')).toBe('block');
      expect(ipVerdict(ip, 5222, 'udp')).toBe('allow');
    }
    const check = await call(app, { method: 'GET', url: '/v1/check?target=8.8.8.8:5222', token: READ });
    expect(check.json()).toMatchObject({ verdict: 'block', rule: 'port:tcp/5222' });
    const { ruleset } = exportNftables(engine.current, { table: 'portcullis' });
    expect(ruleset).toMatch(/set block_ports4 \{[^}]*\. tcp \. 5222/);
    expect(ruleset).toMatch(/set block_ports4 \{[^}]*\. udp \. 3478/);
    expect(ruleset).toMatch(/set block_ports6 \{[^}]*\. tcp \. 5222/);
    expect((await call(app, { method: 'DELETE', url: `/v1/rules/${udp.json<{ id: string }>().id}`, token: WRITE })).statusCode).toBe(204);
    for (const ip of ['8.8.8.8', '2001:db8::1']) expect(ipVerdict(ip, 5222, 'tcp')).toBe('block');
    expect((await call(app, { method: 'DELETE', url: `/v1/rules/${tcp.json<{ id: string }>().id}`, token: WRITE })).statusCode).toBe(204);
    expect(ipVerdict('8.8.8.8', 5222, 'tcp')).toBe('allow');
  });

  it('the same rule twice: 409 naming the rule that exists', async () => {
    const first = await postRule({ type: 'domain', value: 'twice.example', action: 'block' });
    expect(first.statusCode).toBe(201);
    const again = await postRule({ type: 'domain', value: '*.Twice.Example.', action: 'block' });
    expect(again.statusCode).toBe(409);
    const problem = problemOf(again);
    expect(problem.code).toBe('PCL_ERR_CONFLICT');
    expect((again.json<{ existing: string }>()).existing).toBe(first.json<{ id: string }>().id);
    expect(problem.detail).toContain(first.json<{ id: string }>().id);
    // Another action on the same name is another rule.
    expect((await postRule({ type: 'domain', value: 'twice.example', action: 'allow' })).statusCode).toBe(201);
  });

  it('a bare port means TCP and UDP, and is stored and shown as given', async () => {
    const res = await postRule({ type: 'port', value: '5333', action: 'block' });
    expect(res.statusCode).toBe(201);
    expect(res.json<{ value: string }>().value).toBe('5333');
    expect(ipVerdict('8.8.4.4', 5333, 'tcp')).toBe('block');
    expect(ipVerdict('8.8.4.4', 5333, 'udp')).toBe('block');
    const listed = (await call(app, { method: 'GET', url: '/v1/rules', token: READ })).json<{ value: string; type: string }[]>();
    expect(listed.filter((r) => r.type === 'port').map((r) => r.value)).toContain('5333');
    expect((await postRule({ type: 'port', value: 'TCP/05333', action: 'block' })).json<{ value: string }>().value).toBe('tcp/5333');
  });
});

describe('ETag and If-Match', () => {
  it('an app: the current ETag passes, a stale one gets 412 and changes nothing', async () => {
    const first = await call(app, { method: 'GET', url: '/v1/apps/didi', token: READ });
    const etag = String(first.headers.etag);
    expect(etag).toMatch(/^"[^"]+"$/);
    const changed = await call(app, { method: 'PATCH', url: '/v1/apps/didi', token: WRITE, body: { enabled: false }, headers: { 'if-match': etag } });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.headers.etag).not.toBe(etag);
    const stale = await call(app, { method: 'PATCH', url: '/v1/apps/didi', token: WRITE, body: { enabled: true }, headers: { 'if-match': etag } });
    expect(stale.statusCode).toBe(412);
    expect(problemOf(stale).code).toBe('PCL_ERR_PRECONDITION_FAILED');
    expect((await call(app, { method: 'GET', url: '/v1/apps/didi', token: READ })).json()).toMatchObject({ enabled: false });
    const star = await call(app, { method: 'PATCH', url: '/v1/apps/didi', token: WRITE, body: { enabled: true }, headers: { 'if-match': '*' } });
    expect(star.statusCode).toBe(200);
  });

  it('the rules collection: POST with a stale If-Match gets 412 and adds nothing', async () => {
    const etag = String((await call(app, { method: 'GET', url: '/v1/rules', token: READ })).headers.etag);
    await addRule('etag-one.example');
    const count = (await call(app, { method: 'GET', url: '/v1/rules', token: READ })).json<unknown[]>().length;
    const stale = await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body: { type: 'domain', value: 'etag-two.example', action: 'block' }, headers: { 'if-match': etag } });
    expect(stale.statusCode).toBe(412);
    expect((await call(app, { method: 'GET', url: '/v1/rules', token: READ })).json<unknown[]>()).toHaveLength(count);
  });

  it('a rule: DELETE with a wrong If-Match gets 412 and the rule stays', async () => {
    const { id, etag } = await addRule('etag-three.example');
    const wrong = await call(app, { method: 'DELETE', url: `/v1/rules/${id}`, token: WRITE, headers: { 'if-match': '"not-it"' } });
    expect(wrong.statusCode).toBe(412);
    expect((await call(app, { method: 'GET', url: `/v1/rules/${id}`, token: READ })).statusCode).toBe(200);
    const right = await call(app, { method: 'DELETE', url: `/v1/rules/${id}`, token: WRITE, headers: { 'if-match': etag } });
    expect(right.statusCode).toBe(204);
  });
});

describe('bad input: 400 (or 404/413) problem+json that says what is wrong', () => {
  it.each([
    ['an unknown field', { type: 'domain', value: 'a.example', action: 'block', extra: 1 }, 'PCL_ERR_BAD_REQUEST', /body\.extra: unknown field/],
    ['a missing value', { type: 'domain', action: 'block' }, 'PCL_ERR_BAD_REQUEST', /value/],
    ['a wrong type', { type: 'domain', value: 5, action: 'block' }, 'PCL_ERR_BAD_REQUEST', /body\.value/],
    ['an unknown rule type', { type: 'regex', value: 'x', action: 'block' }, 'PCL_ERR_BAD_REQUEST', /body\.type/],
    ['an invalid domain', { type: 'domain', value: 'bad..name', action: 'block' }, 'PCL_ERR_INVALID_NAME', /bad\.\.name/],
    ['a CIDR with host bits', { type: 'cidr', value: '10.0.0.1/8', action: 'block' }, 'PCL_ERR_INVALID_CIDR', /10\.0\.0\.0\/8/],
    ['a port out of range', { type: 'port', value: 'tcp/70000', action: 'block' }, 'PCL_ERR_INVALID_PORT', /70000/],
    ['an unknown app', { type: 'domain', value: 'a.example', action: 'block', app: 'whatsapp' }, 'PCL_ERR_UNKNOWN_APP', /whatsapp/],
  ])('POST /v1/rules with %s', async (_what, body, code, detail) => {
    const res = await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body });
    expect(res.statusCode, res.body).toBe(400);
    const problem = problemOf(res);
    expect(problem.code).toBe(code);
    expect(problem.detail).toMatch(detail);
  });

  it('PATCH with enabled "yes" names the field', async () => {
    const res = await call(app, { method: 'PATCH', url: '/v1/apps/line', token: WRITE, body: { enabled: 'yes' } });
    expect(res.statusCode).toBe(400);
    expect(problemOf(res).problems).toEqual([expect.objectContaining({ field: 'body.enabled' })]);
  });

  it('malformed JSON: 400; a body over 64 KiB: 413', async () => {
    const bad = await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body: '{"type": "domain",' });
    expect(bad.statusCode).toBe(400);
    problemOf(bad);
    const big = await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, body: JSON.stringify({ type: 'domain', value: 'a.example', action: 'block', comment: 'x'.repeat(70_000) }) });
    expect(big.statusCode).toBe(413);
    problemOf(big);
  });

  it.each([
    ['/v1/check?target=bad..name', 400],
    ['/v1/check', 400],
    ['/v1/decisions?limit=0', 400],
    ['/v1/decisions?limit=abc', 400],
    ['/v1/apps/whatsapp', 404],
    ['/v1/rules/nope', 400],
    ['/v1/nothing-here', 404],
  ])('GET %s: %i', async (url, status) => {
    const res = await call(app, { method: 'GET', url, token: ADMIN });
    expect(res.statusCode, res.body).toBe(status);
    problemOf(res);
  });
});

describe('failed-auth rate limit', () => {
  it('after 10 bad tokens from one address further guesses get 429 with Retry-After, while a valid token from the same address still works', async () => {
    const shared = '203.0.113.77';
    for (let i = 0; i < 10; i++) expect((await call(app, { method: 'GET', url: '/v1/apps', token: `guess-${i}-0123456789`, remoteAddress: shared })).statusCode).toBe(401);
    const limited = await call(app, { method: 'GET', url: '/v1/apps', token: 'guess-10-0123456789', remoteAddress: shared });
    expect(limited.statusCode).toBe(429);
    expect(problemOf(limited).code).toBe('PCL_ERR_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // The operator (or the console) behind the same bastion or NAT is not locked out.
    expect((await call(app, { method: 'GET', url: '/v1/apps', token: READ, remoteAddress: shared })).statusCode).toBe(200);
    expect((await call(app, { method: 'POST', url: '/v1/rules', token: WRITE, remoteAddress: shared, body: { type: 'domain', value: 'bastion.example', action: 'block' } })).statusCode).toBe(201);
    expect((await call(app, { method: 'GET', url: '/v1/apps', remoteAddress: shared })).statusCode).toBe(429);
    expect((await call(app, { method: 'GET', url: '/v1/apps', token: READ, remoteAddress: '203.0.113.78' })).statusCode).toBe(200);
    const metrics = (await call(app, { method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^portcullis_admin_auth_failures_total [1-9][0-9]*$/m);
  });
});

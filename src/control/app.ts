import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import { fastify, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { APP_IDS, isAppId, type AppId } from '../catalog/index.js';
import type { CatalogUpdater } from '../catalog/updater.js';
import { DEFAULTS } from '../config/index.js';
import { PortcullisError } from '../errors.js';
import type { Resolution } from '../dns/explain.js';
import type { ListStatus } from '../lists/index.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { PolicyEngine } from '../policy/index.js';
import type { ActivitySampler } from './activity.js';
import { appViews } from './app-view.js';
import type { AuditLog } from './audit.js';
import { AuthFailureLimiter, type Principal, type Scope, type TokenVerifier } from './auth.js';
import { checkTarget, parseTarget } from './check.js';
import type { DecisionLog } from './decisions.js';
import type { PolicyControl } from './policy-control.js';
import * as S from './schemas.js';
import { problemErrorHandler, sendProblem } from './problems.js';
import { etagOf, notFound, type PolicyState } from './state.js';
import type { StoreHealth } from './store/types.js';

export interface AdminDeps {
  /** The catalog in force: its version and origin, and its updates (GET /v1/catalog, POST /v1/catalog/refresh). */
  catalog: Pick<CatalogUpdater, 'status' | 'refresh'>;
  engine: PolicyEngine;
  control: PolicyControl;
  tokens: TokenVerifier;
  audit: AuditLog;
  decisions: DecisionLog;
  metrics: Metrics;
  logger: Logger;
  storeHealth(): StoreHealth;
  /** False until every listener is up. */
  listenersReady(): boolean;
  /** Configuration keys changed since start that wait for a restart (SIGHUP could not apply them). */
  restartPending?(): readonly string[];
  refreshLists(): Promise<ListStatus[]>;
  /** The DNS path's judgement of a name through its live resolution (/v1/check?resolve=1). */
  explain?(name: string): Promise<Resolution>;
  activity: ActivitySampler;
  storeKind: 'file' | 'redis';
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a /v1 route needs; routes without one need no token. */
    scope?: Scope;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** The web console, built by `npm run build` (ui/ -> dist/ui/); from src/control and dist/control alike. */
const UI_DIR = fileURLToPath(new URL('../../dist/ui/', import.meta.url));

/**
 * Every answer, API and console alike: no framing, no sniffing, no referrer, and a policy that
 * allows scripts, styles and calls from this origin only (the console has no inline script).
 */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function isLoopbackAddress(address: string | undefined): boolean {
  return address !== undefined && (address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.'));
}

/** The rule with this id in `state`; PCL_ERR_NOT_FOUND when there is none. */
function ruleView(state: PolicyState, id: string): PolicyState['rules'][number] {
  const rule = state.rules.find((r) => r.id === id);
  if (rule === undefined) throw notFound(`no rule with id "${id}"`);
  return rule;
}

function requireApp(id: string): AppId {
  if (!isAppId(id)) throw notFound(`no app "${id}"; apps are ${APP_IDS.join(', ')}`);
  return id;
}

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

function limitOf(query: S.LimitQuery): number {
  if (query.limit === undefined) return DEFAULT_LIMIT;
  const limit = Number(query.limit);
  if (limit < 1 || limit > MAX_LIMIT) throw new PortcullisError('PCL_ERR_BAD_REQUEST', `querystring.limit: must be 1-${MAX_LIMIT}`);
  return limit;
}

/** If-Match against the current ETag (`*` matches anything); throws 412 on a mismatch. */
function checkIfMatch(request: FastifyRequest, current: string): void {
  const header = request.headers['if-match'];
  if (header === undefined) return;
  const tags = header.split(',').map((t) => t.trim());
  if (tags.includes('*') || tags.includes(current)) return;
  throw new PortcullisError('PCL_ERR_PRECONDITION_FAILED', `If-Match ${header} is not the current ETag ${current}: the resource changed since it was read`);
}

/**
 * The admin API as a fastify app that is not listening: `portcullis start` listens, tests use
 * inject(). Auth, validation and errors are handled once, here, for every route.
 */
export async function buildAdmin(deps: AdminDeps): Promise<FastifyInstance> {
  // Per-request lines (fastify logs them at info) would drown the gateway's own log: warn and up.
  const loggerInstance: FastifyBaseLogger = deps.logger.child({ component: 'admin' }, { level: deps.logger.isLevelEnabled('warn') ? 'warn' : deps.logger.level });
  const app = fastify({
    loggerInstance,
    bodyLimit: DEFAULTS.adminBodyMaxBytes,
    requestTimeout: DEFAULTS.adminRequestTimeoutMs,
    connectionTimeout: DEFAULTS.adminRequestTimeoutMs,
    return503OnClosing: true,
    // Unknown fields are refused, not silently dropped; no type coercion in bodies.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
  });
  app.decorateRequest('principal', null);
  // `curl -d '{"enabled":false}'` sends form-encoded by default: bodies are JSON whatever curl says.
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch {
      done(new PortcullisError('PCL_ERR_BAD_REQUEST', 'the body is not JSON'), undefined);
    }
  });
  const limiter = new AuthFailureLimiter(DEFAULTS.adminAuthFailuresPerMinute, DEFAULTS.adminAuthFailureMaxClients);

  await app.register(swagger, {
    openapi: {
      info: { title: 'portcullis admin API', version: '1', description: 'Switch apps and rules of the portcullis gateway.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  const authenticate = (request: FastifyRequest): void => {
    const scope = request.routeOptions.config.scope;
    if (scope === undefined) return;
    const client = request.socket.remoteAddress ?? '';
    if (!deps.tokens.isConfigured) {
      // No tokens: the API listens on loopback only (config refuses anything else); a request
      // from elsewhere (a forwarded port, a container bridge) gets nothing.
      if (!isLoopbackAddress(client)) throw new PortcullisError('PCL_ERR_FORBIDDEN', 'no admin tokens are configured: the API answers loopback clients only');
      request.principal = { name: 'loopback', scopes: new Set(['read', 'write', 'admin']) };
      return;
    }
    // A valid token is always let in: the limit is on failing attempts only, so operators
    // behind one address (a bastion, a NAT, the console) cannot be locked out by a guesser.
    const principal = deps.tokens.verify(request.headers.authorization);
    if (principal === null) {
      const wait = limiter.retryAfter(client);
      if (wait > 0) throw new PortcullisError('PCL_ERR_RATE_LIMITED', `too many failed authentications; retry in ${wait} s`, { details: { retryAfter: wait } });
      limiter.fail(client);
      deps.metrics.authFailure();
      throw new PortcullisError('PCL_ERR_UNAUTHORIZED', request.headers.authorization === undefined ? 'a bearer token is required' : 'the bearer token is not valid');
    }
    if (!principal.scopes.has(scope)) throw new PortcullisError('PCL_ERR_FORBIDDEN', `token "${principal.name}" lacks the ${scope} scope`);
    request.principal = principal;
  };
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      authenticate(request);
      done();
    } catch (e: unknown) {
      done(e as PortcullisError);
    }
  });

  app.setErrorHandler(problemErrorHandler(deps.logger));

  app.addHook('onSend', (_request, reply, payload, done) => {
    void reply.headers(SECURITY_HEADERS);
    done(null, payload);
  });

  // ---- web console (static; every data call it makes carries the token) -------------------
  if (existsSync(join(UI_DIR, 'index.html'))) {
    await app.register(fastifyStatic, { root: UI_DIR, prefix: '/ui/', index: 'index.html', decorateReply: false, schemaHide: true, cacheControl: true, maxAge: 0 });
    app.get('/', { schema: { hide: true } }, (_request, reply) => reply.redirect('/ui/'));
    app.get('/ui', { schema: { hide: true } }, (_request, reply) => reply.redirect('/ui/'));
  }

  app.setNotFoundHandler((request, reply) => sendProblem(reply, 404, 'PCL_ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`));

  // ---- unauthenticated -------------------------------------------------------------------

  app.get('/healthz', { schema: { hide: true } }, () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, (_request, reply) => {
    const store = deps.storeHealth();
    const checks = { listeners: deps.listenersReady(), policy: deps.engine.version > 0, store: store.isHealthy };
    const isReady = checks.listeners && checks.policy && checks.store;
    // A refused catalog bundle leaves the last good catalog in force: worth a look, not unready.
    const catalog = deps.catalog.status();
    return reply.code(isReady ? 200 : 503).send({
      ready: isReady,
      checks,
      reason: isReady ? null : (store.reason ?? (checks.listeners ? 'policy not loaded' : 'listeners not up')),
      restartPending: deps.restartPending?.() ?? [],
      catalog: {
        version: catalog.version,
        origin: catalog.origin,
        isExpired: catalog.isExpired,
        lastResult: catalog.updates?.lastResult ?? null,
        lastError: catalog.updates?.lastError ?? null,
      },
    });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const text = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(text);
  });

  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());

  // ---- /v1 -----------------------------------------------------------------------------

  const withBlocks = (views: ReturnType<typeof appViews>): (ReturnType<typeof appViews>[number] & { blocksLastHour: number })[] => {
    const blocks = deps.activity.blocksLastHour();
    return views.map((view) => ({ ...view, blocksLastHour: blocks[view.id as AppId] }));
  };
  const appView = (id: AppId): ReturnType<typeof withBlocks>[number] => withBlocks(appViews([deps.engine.catalog.get(id)!], deps.engine.current))[0]!;
  const appEtag = (state: PolicyState, id: AppId): string => etagOf({ id, enabled: state.apps[id] });
  const errors = { 400: S.Problem, 401: S.Problem, 403: S.Problem, 404: S.Problem, 409: S.Problem, 412: S.Problem, 429: S.Problem, 503: S.Problem };

  app.get('/v1/apps', { config: { scope: 'read' }, schema: { response: { 200: { type: 'array', items: S.AppBody } } } }, () =>
    withBlocks(
      appViews(
        APP_IDS.map((id) => deps.engine.catalog.get(id)!),
        deps.engine.current,
      ),
    ),
  );

  app.get('/v1/whoami', { config: { scope: 'read' }, schema: { response: { 200: S.WhoAmI } } }, (request) => ({
    name: request.principal!.name,
    scopes: [...request.principal!.scopes].sort(),
  }));

  app.get<{ Querystring: S.MinutesQuery }>('/v1/activity', { config: { scope: 'read' }, schema: { querystring: S.MinutesQuery } }, (request) => {
    const minutes = request.query.minutes === undefined ? 15 : Number(request.query.minutes);
    if (minutes < 1 || minutes > 60) throw new PortcullisError('PCL_ERR_BAD_REQUEST', 'querystring.minutes: must be 1-60');
    return { points: deps.activity.series(minutes) };
  });

  app.get<{ Params: { id: string } }>('/v1/apps/:id', { config: { scope: 'read' }, schema: { params: S.AppIdParam, response: { 200: S.AppBody, ...errors } } }, (request, reply) => {
    const id = requireApp(request.params.id);
    return reply.header('etag', appEtag(deps.control.current, id)).send(appView(id));
  });

  app.patch<{ Params: { id: string }; Body: S.AppPatch }>(
    '/v1/apps/:id',
    { config: { scope: 'write' }, schema: { params: S.AppIdParam, body: S.AppPatch, response: { 200: S.AppBody, ...errors } } },
    async (request, reply) => {
      const id = requireApp(request.params.id);
      const { state } = await deps.control.change({ kind: 'app', app: id, enabled: request.body.enabled }, request.principal!.name, (current) => checkIfMatch(request, appEtag(current, id)));
      return reply.header('etag', appEtag(state, id)).send(appView(id));
    },
  );

  app.get<{ Querystring: S.RulesQuery }>('/v1/rules', { config: { scope: 'read' }, schema: { querystring: S.RulesQuery, response: { 200: { type: 'array', items: S.RuleBody }, ...errors } } }, (request, reply) => {
    const { rules } = deps.control.current;
    const { app: byApp, type, action } = request.query;
    const selected = rules.filter((r) => (byApp === undefined || r.app === byApp) && (type === undefined || r.type === type) && (action === undefined || r.action === action));
    return reply.header('etag', etagOf(rules)).send(selected);
  });

  app.get<{ Params: { id: string } }>('/v1/rules/:id', { config: { scope: 'read' }, schema: { params: S.RuleIdParam, response: { 200: S.RuleBody, ...errors } } }, (request, reply) => {
    const rule = ruleView(deps.control.current, request.params.id);
    return reply.header('etag', etagOf(rule)).send(rule);
  });

  app.post<{ Body: S.RuleInput }>('/v1/rules', { config: { scope: 'write' }, schema: { body: S.RuleInput, response: { 201: S.RuleBody, ...errors } } }, async (request, reply) => {
    const { after } = await deps.control.change({ kind: 'rule-add', rule: request.body }, request.principal!.name, (current) => checkIfMatch(request, etagOf(current.rules)));
    const rule = after as PolicyState['rules'][number];
    return reply.code(201).header('location', `/v1/rules/${rule.id}`).header('etag', etagOf(rule)).send(rule);
  });

  app.delete<{ Params: { id: string } }>('/v1/rules/:id', { config: { scope: 'write' }, schema: { params: S.RuleIdParam, response: { 204: { type: 'null' }, ...errors } } }, async (request, reply) => {
    await deps.control.change({ kind: 'rule-remove', id: request.params.id }, request.principal!.name, (current) => checkIfMatch(request, etagOf(ruleView(current, request.params.id))));
    return reply.code(204).send();
  });

  app.get<{ Querystring: S.CheckQuery }>('/v1/check', { config: { scope: 'read' }, schema: { querystring: S.CheckQuery, response: { 200: S.CheckBody, ...errors } } }, async (request) => {
    const target = parseTarget(request.query.target);
    if (typeof target === 'string') throw new PortcullisError('PCL_ERR_BAD_REQUEST', target);
    const resolve = request.query.resolve === '1' || request.query.resolve === 'true';
    if (resolve) {
      if (target.name === null) throw new PortcullisError('PCL_ERR_BAD_REQUEST', 'resolve needs a host name, not an address');
      if (deps.explain === undefined) throw new PortcullisError('PCL_ERR_BAD_REQUEST', 'this server has no DNS path to resolve through');
      const resolution = await deps.explain(target.name);
      return { target: request.query.target, verdict: resolution.verdict, app: resolution.app, rule: resolution.rule, layer: 'dns', chain: resolution.chain, answers: resolution.answers };
    }
    const decision = checkTarget(deps.engine, target);
    return { target: request.query.target, verdict: decision.verdict, app: decision.app, rule: decision.rule, layer: decision.layer };
  });

  app.get('/v1/policy', { config: { scope: 'read' } }, (_request, reply) => {
    const state = deps.control.current;
    const counts = Object.fromEntries(deps.engine.current.ruleCounts());
    // One version: the policy in force, as the metrics, the audit log and the nft header give it.
    return reply.header('etag', etagOf({ version: deps.engine.version })).send({
      version: deps.engine.version,
      restartPending: deps.restartPending?.() ?? [],
      apps: state.apps,
      adminRules: state.rules.length,
      rulesInForce: counts,
      store: { kind: deps.storeKind, ...deps.storeHealth() },
      catalog: { version: deps.catalog.status().version, origin: deps.catalog.status().origin },
    });
  });

  app.get('/v1/catalog', { config: { scope: 'read' }, schema: { response: { 200: S.CatalogStatus } } }, () => deps.catalog.status());

  app.post('/v1/catalog/refresh', { config: { scope: 'write' }, schema: { response: { 200: S.CatalogRefresh, 409: S.Problem } } }, async () => {
    if (deps.catalog.status().updates === null) throw new PortcullisError('PCL_ERR_CONFLICT', 'no catalog updates configured (policy.catalog)');
    const result = await deps.catalog.refresh();
    return { result, catalog: deps.catalog.status() };
  });

  app.get<{ Querystring: S.LimitQuery }>('/v1/decisions', { config: { scope: 'read' }, schema: { querystring: S.LimitQuery } }, (request) => deps.decisions.recent(limitOf(request.query)));

  app.get<{ Querystring: S.LimitQuery }>('/v1/audit', { config: { scope: 'admin' }, schema: { querystring: S.LimitQuery } }, (request) => deps.audit.recent(limitOf(request.query)));

  app.post('/v1/lists/refresh', { config: { scope: 'write' } }, async () => ({ lists: await deps.refreshLists() }));

  return app;
}

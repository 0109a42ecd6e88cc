import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { APP_IDS } from '../catalog/index.js';

/** Request and response shapes of the admin API; validation and /openapi.json both come from here. */

export const AppIdParam = Type.Object({ id: Type.String({ description: 'app id', examples: [...APP_IDS] }) }, { additionalProperties: false });

export const AppPatch = Type.Object({ enabled: Type.Boolean() }, { additionalProperties: false });
export type AppPatch = Static<typeof AppPatch>;

const Counts = Type.Object({ domains: Type.Integer(), cidrs: Type.Integer(), ports: Type.Integer(), protocols: Type.Integer({ description: 'protocols recognised by their bytes (loco)' }) });

export const AppBody = Type.Object({
  id: Type.String(),
  name: Type.String(),
  enabled: Type.Boolean(),
  extended: Type.Boolean(),
  coverage: Type.Union([Type.Literal('verified'), Type.Literal('partial'), Type.Literal('none')]),
  coverageNote: Type.Union([Type.String(), Type.Null()]),
  rules: Counts,
  catalog: Counts,
  blocksLastHour: Type.Optional(Type.Integer({ description: 'blocks attributed to the app over the last hour' })),
});

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const CatalogStatus = Type.Object({
  version: Type.Integer({ description: 'version of the catalog in force' }),
  origin: Type.Union([Type.Literal('bundled'), Type.Literal('signed')], { description: 'bundled with this build, or a verified signed bundle' }),
  issued: Type.String(),
  expires: Nullable(Type.String()),
  isExpired: Type.Boolean({ description: 'a signed bundle past its expiry stays in force until a newer one loads' }),
  bundledVersion: Type.Integer(),
  receivedVia: Nullable(Type.Union([Type.Literal('download'), Type.Literal('fleet')])),
  receivedAt: Nullable(Type.String()),
  updates: Nullable(
    Type.Object({
      url: Type.String(),
      refreshSeconds: Type.Number(),
      lastCheck: Nullable(Type.String()),
      lastResult: Nullable(Type.String({ description: 'applied, unchanged, fetch-failed, malformed, bad-signature, invalid, expired, stale' })),
      lastError: Nullable(Type.String()),
      nextCheck: Nullable(Type.String()),
    }),
  ),
});

export const CatalogRefresh = Type.Object({ result: Type.String(), catalog: CatalogStatus });

export const WhoAmI = Type.Object({ name: Type.String(), scopes: Type.Array(Type.String()) });

export const MinutesQuery = Type.Object({ minutes: Type.Optional(Type.String({ pattern: '^[0-9]{1,2}$', description: '1-60, default 15' })) }, { additionalProperties: false });
export type MinutesQuery = Static<typeof MinutesQuery>;

export const RuleInput = Type.Object(
  {
    type: Type.Union([Type.Literal('domain'), Type.Literal('cidr'), Type.Literal('port')]),
    value: Type.String({ minLength: 1, maxLength: 300, description: 'kakao.com (subdomains included), a label pattern katalk-*.kgslb.com, 147.92.128.0/17, or tcp/5223 / udp/1000-2000' }),
    action: Type.Union([Type.Literal('block'), Type.Literal('allow')]),
    app: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'attribute the rule to a catalog app (it then follows the app switch)' })),
    comment: Type.Optional(Type.Union([Type.String({ maxLength: 500 }), Type.Null()])),
  },
  { additionalProperties: false },
);
export type RuleInput = Static<typeof RuleInput>;

export const RuleBody = Type.Object({
  id: Type.String(),
  type: Type.String(),
  value: Type.String(),
  action: Type.String(),
  app: Type.Union([Type.String(), Type.Null()]),
  comment: Type.Union([Type.String(), Type.Null()]),
});

export const RuleIdParam = Type.Object({ id: Type.String({ pattern: '^r[0-9]{1,15}$' }) }, { additionalProperties: false });

export const RulesQuery = Type.Object(
  {
    app: Type.Optional(Type.String()),
    type: Type.Optional(Type.Union([Type.Literal('domain'), Type.Literal('cidr'), Type.Literal('port')])),
    action: Type.Optional(Type.Union([Type.Literal('block'), Type.Literal('allow')])),
  },
  { additionalProperties: false },
);
export type RulesQuery = Static<typeof RulesQuery>;

export const CheckQuery = Type.Object(
  {
    target: Type.String({ minLength: 1, maxLength: 300 }),
    resolve: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('true'), Type.Literal('0'), Type.Literal('false')], { description: 'follow the live resolution as the DNS path does: the CNAME chain and addresses, each with its verdict' })),
  },
  { additionalProperties: false },
);
export type CheckQuery = Static<typeof CheckQuery>;

const Verdict = Type.Union([Type.Literal('allow'), Type.Literal('block')]);

export const CheckBody = Type.Object({
  target: Type.String(),
  verdict: Verdict,
  app: Nullable(Type.String()),
  rule: Nullable(Type.String()),
  layer: Type.String(),
  chain: Type.Optional(
    Type.Array(
      Type.Object({
        kind: Type.Union([Type.Literal('query'), Type.Literal('cname'), Type.Literal('address')]),
        target: Type.String(),
        qtype: Nullable(Type.Union([Type.Literal('A'), Type.Literal('AAAA')])),
        verdict: Verdict,
        app: Nullable(Type.String()),
        rule: Nullable(Type.String()),
      }),
    ),
  ),
  answers: Type.Optional(
    Type.Array(
      Type.Object({
        qtype: Type.Union([Type.Literal('A'), Type.Literal('AAAA')]),
        rcode: Nullable(Type.String()),
        error: Nullable(Type.String()),
        verdict: Verdict,
        rule: Nullable(Type.String()),
      }),
    ),
  ),
});

/** Query strings are text: the limit is checked as digits here and as a range by the route. */
export const LimitQuery = Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: '1-1000, default 100' })) }, { additionalProperties: false });
export type LimitQuery = Static<typeof LimitQuery>;

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    problems: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
    existing: Type.Optional(Type.String({ description: 'on a conflict: the id of the rule that exists already' })),
  },
  { description: 'application/problem+json (RFC 9457)' },
);

import { Type, type Static } from '@sinclair/typebox';
import { APP_IDS, PROTOCOL_IDS } from './apps.js';

/** One file in blocklists/: what the YAML may say, before semantic checks. */
const Source = Type.Union([Type.String({ minLength: 3 }), Type.Array(Type.String({ minLength: 3 }), { minItems: 1 })], {
  description: 'where the fact comes from: repository and file, publication, or document',
});
const Tier = Type.Union([Type.Literal('core'), Type.Literal('extended')]);

const entryFields = {
  value: Type.String({ minLength: 1 }),
  tier: Tier,
  source: Source,
  note: Type.Optional(Type.String()),
};

export const CatalogDomainSchema = Type.Object(
  { ...entryFields, match: Type.Optional(Type.Union([Type.Literal('suffix'), Type.Literal('exact')])) },
  { additionalProperties: false },
);
export const CatalogCidrSchema = Type.Object(
  { ...entryFields, scope: Type.Optional(Type.Union([Type.Literal('all-ports'), Type.Literal('app-ports')])) },
  { additionalProperties: false },
);
export const CatalogPortSchema = Type.Object(
  {
    ...entryFields,
    // Must be true: a bare port rule would block Apple/Google push and other shared services.
    withAppCidrs: Type.Literal(true),
  },
  { additionalProperties: false },
);
export const CatalogProtocolSchema = Type.Object(
  { ...entryFields, value: Type.Union(PROTOCOL_IDS.map((id) => Type.Literal(id))) },
  { additionalProperties: false, description: 'a protocol recognised by its bytes on any address and port' },
);
export const CatalogAsnSchema = Type.Object(
  { value: Type.String({ pattern: '^AS[0-9]+$' }), tier: Tier, source: Source, note: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const CatalogAppSchema = Type.Object(
  {
    id: Type.Union(APP_IDS.map((id) => Type.Literal(id))),
    name: Type.String({ minLength: 1 }),
    description: Type.String({ minLength: 1 }),
    coverage: Type.Union([Type.Literal('verified'), Type.Literal('partial'), Type.Literal('none')]),
    coverageNote: Type.Optional(Type.String()),
    identity: Type.Optional(Type.Object({ note: Type.String(), source: Source }, { additionalProperties: false })),
    domains: Type.Array(CatalogDomainSchema),
    cidrs: Type.Array(CatalogCidrSchema),
    ports: Type.Array(CatalogPortSchema),
    protocols: Type.Optional(Type.Array(CatalogProtocolSchema)),
    asns: Type.Optional(Type.Array(CatalogAsnSchema)),
  },
  { additionalProperties: false },
);

export type CatalogAppFile = Static<typeof CatalogAppSchema>;

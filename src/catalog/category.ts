import { Type, type Static } from '@sinclair/typebox';
import { schemaProblems, type Problem } from '../config/yaml-source.js';
import { parseRuleName } from '../match/name.js';
import type { CatalogDocument } from './load.js';

/**
 * A category is a sourced list of names that belongs to no app, switched as a whole: today the
 * public DoH/DoT resolvers (`blocklists/categories/doh-bypass.yaml`).
 */
export const CATEGORY_IDS = ['doh-bypass'] as const;

export type CategoryId = (typeof CATEGORY_IDS)[number];

const CategorySchema = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9-]+$' }),
    name: Type.String({ minLength: 1 }),
    description: Type.String({ minLength: 1 }),
    domains: Type.Array(Type.Object({ value: Type.String({ minLength: 1 }), source: Type.String({ minLength: 3 }), note: Type.Optional(Type.String()) }, { additionalProperties: false }), { minItems: 1 }),
  },
  { additionalProperties: false },
);

export interface Category {
  id: string;
  name: string;
  /** Normalised names; each covers its subdomains. */
  domains: readonly string[];
}

/** Checks and compiles one category's document; null (with problems recorded) when it is unusable. */
export function compileCategory(document: CatalogDocument, expectedId: CategoryId, problems: Problem[]): Category | null {
  const schemaIssues = schemaProblems(CategorySchema, document.value, document.locate);
  if (schemaIssues.length > 0) {
    problems.push(...schemaIssues);
    return null;
  }
  const raw = document.value as Static<typeof CategorySchema>;
  const before = problems.length;
  if (raw.id !== expectedId) problems.push({ ...document.locate(['id']), message: `id "${raw.id}" does not match the category it is listed as (${expectedId})` });
  const domains: string[] = [];
  raw.domains.forEach((entry, i) => {
    try {
      domains.push(parseRuleName(entry.value));
    } catch (e: unknown) {
      problems.push({ ...document.locate(['domains', i, 'value']), message: e instanceof Error ? e.message : String(e) });
    }
  });
  return problems.length === before ? { id: raw.id, name: raw.name, domains } : null;
}

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { locateIn, parseYaml, schemaProblems } from '../config/yaml-source.js';
import { PortcullisError, formatLocation } from '../errors.js';
import { parseRuleName } from '../match/name.js';
import { DEFAULT_CATALOG_DIR } from './load.js';

/**
 * A category is a sourced list of names that belongs to no app, switched as a whole: today the
 * public DoH/DoT resolvers (`blocklists/categories/doh-bypass.yaml`).
 */
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

export async function loadCategory(id: string, dir: string = join(DEFAULT_CATALOG_DIR, 'categories')): Promise<Category> {
  const file = join(dir, `${id}.yaml`);
  const source = parseYaml(file, await readFile(file, 'utf8'));
  const problems = schemaProblems(CategorySchema, source.value, locateIn(source));
  const raw = source.value as Static<typeof CategorySchema>;
  const domains: string[] = [];
  if (problems.length === 0) {
    raw.domains.forEach((entry, i) => {
      try {
        domains.push(parseRuleName(entry.value));
      } catch (e: unknown) {
        problems.push({ ...locateIn(source)(['domains', i, 'value']), message: e instanceof Error ? e.message : String(e) });
      }
    });
  }
  if (problems.length > 0) {
    throw new PortcullisError('PCL_ERR_CATALOG_INVALID', problems.map((p) => `${formatLocation(p)}: ${p.message}`).join('\n'), { details: { problems } });
  }
  return { id: raw.id, name: raw.name, domains };
}

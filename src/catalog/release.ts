import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { pathToField, schemaProblems, type Problem } from '../config/yaml-source.js';
import { APP_IDS, type AppId } from './apps.js';
import { CATEGORY_IDS, compileCategory, type Category, type CategoryId } from './category.js';
import { DEFAULT_CATALOG_DIR, catalogInvalid, compileApps, readCatalogDocument, type Catalog, type CatalogDocument } from './load.js';

/** The catalog's documents as plain JSON: what a signed bundle carries and a DNS worker receives. */
export interface CatalogDocuments {
  apps: Record<string, unknown>;
  categories: Record<string, unknown>;
}

export interface ReleaseMeta {
  /** Monotonic: a bundle replaces the catalog in force only with a higher version. */
  version: number;
  issued: string;
  /** Past this time a bundle is refused; null for the catalog bundled with the build. */
  expires: string | null;
}

/** One version of the whole catalog: every app and category, compiled, with where it came from. */
export interface CatalogRelease extends ReleaseMeta {
  /** bundled: blocklists/ as shipped with this build; signed: a verified catalog bundle. */
  origin: 'bundled' | 'signed';
  catalog: Catalog;
  categories: ReadonlyMap<CategoryId, Category>;
  documents: CatalogDocuments;
}

/** An RFC 3339 date-time with its zone, as `issued` and `expires` are written. */
export const Rfc3339 = Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$' });
export const CatalogVersion = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });

/** blocklists/catalog.yaml: the bundled catalog's own version. */
const BundledMetaSchema = Type.Object({ version: CatalogVersion, issued: Rfc3339 }, { additionalProperties: false });

/** Compiles the apps and categories; null when any problem was found (each recorded). */
function compileDocuments(
  apps: ReadonlyMap<AppId, CatalogDocument>,
  categories: ReadonlyMap<CategoryId, CatalogDocument>,
  problems: Problem[],
): { catalog: Catalog; categories: Map<CategoryId, Category> } | null {
  const before = problems.length;
  const catalog = compileApps(apps, problems);
  const compiled = new Map<CategoryId, Category>();
  for (const [id, document] of categories) {
    const category = compileCategory(document, id, problems);
    if (category !== null) compiled.set(id, category);
  }
  return problems.length === before ? { catalog, categories: compiled } : null;
}

/**
 * The documents under one key of a JSON catalog (`apps`, `categories`), each locatable by its
 * JSON path; every known id must be there and nothing else may be.
 */
function jsonDocuments<Id extends string>(key: 'apps' | 'categories', ids: readonly Id[], values: Record<string, unknown>, label: string, problems: Problem[]): Map<Id, CatalogDocument> {
  const documents = new Map<Id, CatalogDocument>();
  for (const id of ids) {
    const value = Object.hasOwn(values, id) ? values[id] : undefined;
    if (value === undefined) problems.push({ file: label, field: `${key}.${id}`, message: `missing: a catalog lists every one of ${ids.join(', ')} (one without known endpoints has empty lists)` });
    else documents.set(id, { value, locate: (path) => ({ file: label, field: pathToField([key, id, ...path]) }) });
  }
  for (const id of Object.keys(values)) if (!(ids as readonly string[]).includes(id)) problems.push({ file: label, field: `${key}.${id}`, message: `unknown (${key} are ${ids.join(', ')})` });
  return documents;
}

/**
 * A release from plain JSON documents (a bundle's payload, a DNS worker's copy); problems name
 * `label` and the JSON path (`apps.kakaotalk.domains[3].value`).
 */
export function compileRelease(documents: CatalogDocuments, meta: ReleaseMeta, origin: CatalogRelease['origin'], label: string, problems: Problem[]): CatalogRelease | null {
  const before = problems.length;
  const apps = jsonDocuments('apps', APP_IDS, documents.apps, label, problems);
  const categories = jsonDocuments('categories', CATEGORY_IDS, documents.categories, label, problems);
  const compiled = compileDocuments(apps, categories, problems);
  return compiled === null || problems.length > before ? null : { ...meta, origin, ...compiled, documents };
}

/** The catalog shipped in blocklists/: every app file, every category, and catalog.yaml's version. */
export async function loadBundledReleaseChecked(dir: string = DEFAULT_CATALOG_DIR): Promise<{ release: CatalogRelease | null; problems: Problem[] }> {
  const problems: Problem[] = [];
  const metaDocument = await readCatalogDocument(join(dir, 'catalog.yaml'), problems);
  const metaIssues = metaDocument === null ? [] : schemaProblems(BundledMetaSchema, metaDocument.value, metaDocument.locate);
  problems.push(...metaIssues);
  const apps = new Map<AppId, CatalogDocument>();
  for (const id of APP_IDS) {
    const document = await readCatalogDocument(join(dir, `${id}.yaml`), problems);
    if (document !== null) apps.set(id, document);
  }
  const categories = new Map<CategoryId, CatalogDocument>();
  for (const id of CATEGORY_IDS) {
    const document = await readCatalogDocument(join(dir, 'categories', `${id}.yaml`), problems);
    if (document !== null) categories.set(id, document);
  }
  const compiled = compileDocuments(apps, categories, problems);
  if (compiled === null || metaDocument === null || metaIssues.length > 0 || problems.length > 0) return { release: null, problems };
  const meta = metaDocument.value as Static<typeof BundledMetaSchema>;
  const documents: CatalogDocuments = {
    apps: Object.fromEntries([...apps].map(([id, d]) => [id, d.value])),
    categories: Object.fromEntries([...categories].map(([id, d]) => [id, d.value])),
  };
  return { release: { version: meta.version, issued: meta.issued, expires: null, origin: 'bundled', ...compiled, documents }, problems };
}

/** The bundled catalog, or PCL_ERR_CATALOG_INVALID listing every problem. */
export async function loadBundledRelease(dir: string = DEFAULT_CATALOG_DIR): Promise<CatalogRelease> {
  const { release, problems } = await loadBundledReleaseChecked(dir);
  if (release === null) throw catalogInvalid(problems);
  return release;
}

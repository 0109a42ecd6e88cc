import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { locateIn, parseYaml, schemaProblems, type Locate, type Problem } from '../config/yaml-source.js';
import { PortcullisError, errorMessage, formatLocation, isPortcullisError } from '../errors.js';
import { formatCidr, parseCidr, type ParsedCidr } from '../match/ip.js';
import { parseRuleName } from '../match/name.js';
import { isNamePattern, parseNamePattern, type NamePattern } from '../match/name-pattern.js';
import { formatPortRange, parsePortRange, type PortRange } from '../match/ports.js';
import { APP_IDS, type AppId, type ProtocolId, type Tier } from './apps.js';
import { CatalogAppSchema, type CatalogAppFile } from './schema.js';

export const DEFAULT_CATALOG_DIR = fileURLToPath(new URL('../../blocklists/', import.meta.url));

export interface CatalogDomain {
  /** The name, or for match 'pattern' the pattern's text (`katalk-*.kgslb.com`). */
  name: string;
  /** suffix: the name and its subdomains; exact: the name only; pattern: a label pattern (match/name-pattern.ts). */
  match: 'suffix' | 'exact' | 'pattern';
  pattern: NamePattern | null;
  tier: Tier;
  source: readonly string[];
}

export interface CatalogCidr {
  cidr: ParsedCidr;
  text: string;
  tier: Tier;
  /** all-ports: the address is blocked on every port; app-ports: only on this app's ports. */
  scope: 'all-ports' | 'app-ports';
  source: readonly string[];
}

export interface CatalogPort {
  range: PortRange;
  text: string;
  tier: Tier;
  source: readonly string[];
}

export interface CatalogProtocol {
  id: ProtocolId;
  tier: Tier;
  source: readonly string[];
}

export interface CatalogApp {
  id: AppId;
  name: string;
  description: string;
  coverage: 'verified' | 'partial' | 'none';
  coverageNote: string | null;
  domains: readonly CatalogDomain[];
  cidrs: readonly CatalogCidr[];
  ports: readonly CatalogPort[];
  protocols: readonly CatalogProtocol[];
}

export type Catalog = ReadonlyMap<AppId, CatalogApp>;

function sourceList(source: string | string[]): string[] {
  return typeof source === 'string' ? [source] : source;
}

/**
 * One app's or category's document, parsed (a blocklists/ YAML file or an entry of a signed
 * bundle), with a way to name where a path inside it sits for problem reports.
 */
export interface CatalogDocument {
  value: unknown;
  locate: Locate;
}

/**
 * Semantic checks the schema cannot express: every value parses and is written in canonical
 * form, nothing is listed twice (within the app or across apps), the document is the app it says.
 */
function compileApp(raw: CatalogAppFile, locate: Locate, expectedId: AppId, problems: Problem[]): CatalogApp {
  const at = (path: (string | number)[], message: string): void => {
    problems.push({ ...locate(path), message });
  };
  if (raw.id !== expectedId) at(['id'], `id "${raw.id}" does not match the app it is listed as (${expectedId})`);
  if (raw.coverage !== 'verified' && (raw.coverageNote === undefined || raw.coverageNote.trim() === '')) {
    at(['coverageNote'], 'an app without full coverage must say why in coverageNote');
  }

  const domains: CatalogDomain[] = [];
  const seenDomains = new Set<string>();
  raw.domains.forEach((entry, i) => {
    try {
      const pattern = isNamePattern(entry.value) ? parseNamePattern(entry.value) : null;
      if (pattern !== null && entry.match === 'exact') at(['domains', i, 'match'], 'a label pattern covers its subdomains: it cannot be exact');
      const name = pattern?.text ?? parseRuleName(entry.value);
      if (name !== entry.value) at(['domains', i, 'value'], `write "${entry.value}" as "${name}"`);
      if (seenDomains.has(name)) at(['domains', i, 'value'], `duplicate domain ${name}`);
      seenDomains.add(name);
      domains.push({ name, match: pattern === null ? (entry.match ?? 'suffix') : 'pattern', pattern, tier: entry.tier, source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['domains', i, 'value'], errorMessage(e));
    }
  });

  const cidrs: CatalogCidr[] = [];
  const seenCidrs = new Set<string>();
  raw.cidrs.forEach((entry, i) => {
    try {
      const cidr = parseCidr(entry.value);
      const text = formatCidr(cidr);
      if (text !== entry.value) at(['cidrs', i, 'value'], `write "${entry.value}" as "${text}"`);
      if (seenCidrs.has(text)) at(['cidrs', i, 'value'], `duplicate CIDR ${text}`);
      seenCidrs.add(text);
      cidrs.push({ cidr, text, tier: entry.tier, scope: entry.scope ?? 'all-ports', source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['cidrs', i, 'value'], errorMessage(e));
    }
  });
  if (cidrs.some((c) => c.scope === 'app-ports') && raw.ports.length === 0) {
    at(['cidrs'], 'a CIDR with scope app-ports needs the app to list ports');
  }

  const ports: CatalogPort[] = [];
  const seenPorts = new Set<string>();
  raw.ports.forEach((entry, i) => {
    try {
      const range = parsePortRange(entry.value);
      const text = formatPortRange(range);
      if (text !== entry.value) at(['ports', i, 'value'], `write "${entry.value}" as "${text}"`);
      if (seenPorts.has(text)) at(['ports', i, 'value'], `duplicate port ${text}`);
      seenPorts.add(text);
      ports.push({ range, text, tier: entry.tier, source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['ports', i, 'value'], errorMessage(e));
    }
  });
  if (ports.length > 0 && cidrs.length === 0) at(['ports'], 'ports apply only together with the app\'s CIDRs, and it lists none');

  const protocols: CatalogProtocol[] = [];
  const seenProtocols = new Set<string>();
  (raw.protocols ?? []).forEach((entry, i) => {
    if (seenProtocols.has(entry.value)) at(['protocols', i, 'value'], `duplicate protocol ${entry.value}`);
    seenProtocols.add(entry.value);
    protocols.push({ id: entry.value, tier: entry.tier, source: sourceList(entry.source) });
  });

  return {
    id: raw.id,
    name: raw.name,
    description: raw.description,
    coverage: raw.coverage,
    coverageNote: raw.coverageNote ?? null,
    domains,
    cidrs,
    ports,
    protocols,
  };
}

/** The same domain or CIDR claimed by two apps would make the verdict's app ambiguous. */
function crossAppDuplicates(apps: CatalogApp[], documents: ReadonlyMap<AppId, CatalogDocument>, problems: Problem[]): void {
  const owners = new Map<string, AppId>();
  for (const app of apps) {
    const keys = [...app.domains.map((d) => `domain ${d.name}`), ...app.cidrs.map((c) => `CIDR ${c.text}`), ...app.protocols.map((p) => `protocol ${p.id}`)];
    for (const key of keys) {
      const owner = owners.get(key);
      if (owner !== undefined && owner !== app.id) {
        const where = documents.get(app.id)?.locate([]) ?? { file: app.id };
        problems.push({ file: where.file, message: `${key} is also listed by ${owner}` });
      }
      owners.set(key, app.id);
    }
  }
}

/**
 * Checks and compiles every app's document (all five must be there); problems are collected,
 * not thrown, so `validate` and a refused bundle can list them all.
 */
export function compileApps(documents: ReadonlyMap<AppId, CatalogDocument>, problems: Problem[]): Catalog {
  const apps: CatalogApp[] = [];
  for (const id of APP_IDS) {
    const document = documents.get(id);
    if (document === undefined) continue;
    const schemaIssues = schemaProblems(CatalogAppSchema, document.value, document.locate);
    if (schemaIssues.length > 0) {
      problems.push(...schemaIssues);
      continue;
    }
    apps.push(compileApp(document.value as CatalogAppFile, document.locate, id, problems));
  }
  crossAppDuplicates(apps, documents, problems);
  return new Map(apps.map((app) => [app.id, app]));
}

export interface CatalogLoadResult {
  catalog: Catalog;
  problems: Problem[];
}

/** Reads one YAML document of the catalog directory, or records why it cannot. */
export async function readCatalogDocument(file: string, problems: Problem[]): Promise<CatalogDocument | null> {
  try {
    const source = parseYaml(file, await readFile(file, 'utf8'));
    return { value: source.value, locate: locateIn(source) };
  } catch (e: unknown) {
    problems.push({ file, message: isPortcullisError(e) ? errorMessage(e) : `cannot read: ${errorMessage(e)}` });
    return null;
  }
}

/** Loads and checks every app file; returns problems instead of throwing so `validate` can list them all. */
export async function loadCatalogChecked(dir: string = DEFAULT_CATALOG_DIR): Promise<CatalogLoadResult> {
  const problems: Problem[] = [];
  const documents = new Map<AppId, CatalogDocument>();
  for (const id of APP_IDS) {
    const document = await readCatalogDocument(join(dir, `${id}.yaml`), problems);
    if (document !== null) documents.set(id, document);
  }
  return { catalog: compileApps(documents, problems), problems };
}

/** Loads the catalog or throws PCL_ERR_CATALOG_INVALID listing every problem. */
export async function loadCatalog(dir: string = DEFAULT_CATALOG_DIR): Promise<Catalog> {
  const { catalog, problems } = await loadCatalogChecked(dir);
  if (problems.length > 0) throw catalogInvalid(problems);
  return catalog;
}

export function catalogInvalid(problems: readonly Problem[]): PortcullisError {
  return new PortcullisError('PCL_ERR_CATALOG_INVALID', problems.map((p) => `${formatLocation(p)}: ${p.message}`).join('\n'), { details: { problems } });
}

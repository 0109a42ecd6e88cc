import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { locateIn, parseYaml, schemaProblems, type Problem } from '../config/yaml-source.js';
import { PortcullisError, errorMessage, formatLocation } from '../errors.js';
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
 * Semantic checks the schema cannot express: every value parses and is written in canonical
 * form, nothing is listed twice (within the app or across apps), the file is named after its id.
 */
function compileApp(file: string, raw: CatalogAppFile, lineOf: (path: (string | number)[]) => number | undefined, expectedId: string, problems: Problem[]): CatalogApp {
  const at = (path: (string | number)[], field: string, message: string): void => {
    problems.push({ file, field, line: lineOf(path), message });
  };
  if (raw.id !== expectedId) at(['id'], 'id', `id "${raw.id}" does not match the file name (${expectedId}.yaml)`);
  if (raw.coverage !== 'verified' && (raw.coverageNote === undefined || raw.coverageNote.trim() === '')) {
    at(['coverage'], 'coverageNote', 'an app without full coverage must say why in coverageNote');
  }

  const domains: CatalogDomain[] = [];
  const seenDomains = new Set<string>();
  raw.domains.forEach((entry, i) => {
    try {
      const pattern = isNamePattern(entry.value) ? parseNamePattern(entry.value) : null;
      if (pattern !== null && entry.match === 'exact') at(['domains', i, 'match'], `domains[${i}].match`, 'a label pattern covers its subdomains: it cannot be exact');
      const name = pattern?.text ?? parseRuleName(entry.value);
      if (name !== entry.value) at(['domains', i, 'value'], `domains[${i}].value`, `write "${entry.value}" as "${name}"`);
      if (seenDomains.has(name)) at(['domains', i, 'value'], `domains[${i}].value`, `duplicate domain ${name}`);
      seenDomains.add(name);
      domains.push({ name, match: pattern === null ? (entry.match ?? 'suffix') : 'pattern', pattern, tier: entry.tier, source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['domains', i, 'value'], `domains[${i}].value`, errorMessage(e));
    }
  });

  const cidrs: CatalogCidr[] = [];
  const seenCidrs = new Set<string>();
  raw.cidrs.forEach((entry, i) => {
    try {
      const cidr = parseCidr(entry.value);
      const text = formatCidr(cidr);
      if (text !== entry.value) at(['cidrs', i, 'value'], `cidrs[${i}].value`, `write "${entry.value}" as "${text}"`);
      if (seenCidrs.has(text)) at(['cidrs', i, 'value'], `cidrs[${i}].value`, `duplicate CIDR ${text}`);
      seenCidrs.add(text);
      cidrs.push({ cidr, text, tier: entry.tier, scope: entry.scope ?? 'all-ports', source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['cidrs', i, 'value'], `cidrs[${i}].value`, errorMessage(e));
    }
  });
  if (cidrs.some((c) => c.scope === 'app-ports') && raw.ports.length === 0) {
    at(['cidrs'], 'cidrs', 'a CIDR with scope app-ports needs the app to list ports');
  }

  const ports: CatalogPort[] = [];
  const seenPorts = new Set<string>();
  raw.ports.forEach((entry, i) => {
    try {
      const range = parsePortRange(entry.value);
      const text = formatPortRange(range);
      if (text !== entry.value) at(['ports', i, 'value'], `ports[${i}].value`, `write "${entry.value}" as "${text}"`);
      if (seenPorts.has(text)) at(['ports', i, 'value'], `ports[${i}].value`, `duplicate port ${text}`);
      seenPorts.add(text);
      ports.push({ range, text, tier: entry.tier, source: sourceList(entry.source) });
    } catch (e: unknown) {
      at(['ports', i, 'value'], `ports[${i}].value`, errorMessage(e));
    }
  });
  if (ports.length > 0 && cidrs.length === 0) at(['ports'], 'ports', 'ports apply only together with the app\'s CIDRs, and it lists none');

  const protocols: CatalogProtocol[] = [];
  const seenProtocols = new Set<string>();
  (raw.protocols ?? []).forEach((entry, i) => {
    if (seenProtocols.has(entry.value)) at(['protocols', i, 'value'], `protocols[${i}].value`, `duplicate protocol ${entry.value}`);
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
function crossAppDuplicates(apps: CatalogApp[], files: Map<AppId, string>, problems: Problem[]): void {
  const owners = new Map<string, AppId>();
  for (const app of apps) {
    const keys = [...app.domains.map((d) => `domain ${d.name}`), ...app.cidrs.map((c) => `CIDR ${c.text}`), ...app.protocols.map((p) => `protocol ${p.id}`)];
    for (const key of keys) {
      const owner = owners.get(key);
      if (owner !== undefined && owner !== app.id) {
        problems.push({ file: files.get(app.id) ?? app.id, message: `${key} is also listed by ${owner}` });
      }
      owners.set(key, app.id);
    }
  }
}

export interface CatalogLoadResult {
  catalog: Catalog;
  problems: Problem[];
}

/** Loads and checks every app file; returns problems instead of throwing so `validate` can list them all. */
export async function loadCatalogChecked(dir: string = DEFAULT_CATALOG_DIR): Promise<CatalogLoadResult> {
  const problems: Problem[] = [];
  const apps: CatalogApp[] = [];
  const files = new Map<AppId, string>();
  for (const id of APP_IDS) {
    const file = join(dir, `${id}.yaml`);
    files.set(id, file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e: unknown) {
      problems.push({ file, message: `cannot read: ${errorMessage(e)}` });
      continue;
    }
    try {
      const source = parseYaml(file, text);
      const schemaIssues = schemaProblems(CatalogAppSchema, source.value, locateIn(source));
      if (schemaIssues.length > 0) {
        problems.push(...schemaIssues);
        continue;
      }
      apps.push(compileApp(file, source.value as CatalogAppFile, (path) => source.lineOf(path), id, problems));
    } catch (e: unknown) {
      problems.push({ file, message: errorMessage(e) });
    }
  }
  crossAppDuplicates(apps, files, problems);
  return { catalog: new Map(apps.map((app) => [app.id, app])), problems };
}

/** Loads the catalog or throws PCL_ERR_CATALOG_INVALID listing every problem. */
export async function loadCatalog(dir: string = DEFAULT_CATALOG_DIR): Promise<Catalog> {
  const { catalog, problems } = await loadCatalogChecked(dir);
  if (problems.length > 0) {
    throw new PortcullisError('PCL_ERR_CATALOG_INVALID', problems.map((p) => `${formatLocation(p)}: ${p.message}`).join('\n'), {
      details: { problems },
    });
  }
  return catalog;
}

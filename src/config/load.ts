import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import type { TObject, TSchema } from '@sinclair/typebox';
import { configInvalid, errorMessage, isPortcullisError } from '../errors.js';
import { maskWords, parseCidr, parseIp } from '../match/ip.js';
import { normalizeQueryName, tryParseRuleName } from '../match/name.js';
import { isIP } from 'node:net';
import { isLoopbackHost, parseHostPort } from './address.js';
import { parseUpstreamAddress } from './upstream-address.js';
import { nativeLoadError, nativeBinding } from '../util/native-addon.js';
import { DEFAULTS } from './defaults.js';
import { ConfigSchema, DEFAULT_FILE, type Config, type CatalogUpdateConfig, type ConfigFile, type DnsConfig, type ListConfig, type MergedConfigFile, type TransparentConfig } from './schema.js';
import { locateIn, parseYaml, pathToField, schemaProblemsAt, type Locate, type Problem, type YamlSource } from './yaml-source.js';

export const DEFAULT_CONFIG_FILE = 'portcullis.yaml';
/** Env vars with the prefix that are not config keys: read by the CLI itself. */
const RESERVED_ENV = new Set(['PORTCULLIS_CONFIG', 'PORTCULLIS_URL', 'PORTCULLIS_TOKEN', 'PORTCULLIS_NO_NATIVE']);

export interface LoadOptions {
  /** --config; else PORTCULLIS_CONFIG; else ./portcullis.yaml when present; else defaults only. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Overrides from flags: dotted key -> raw text (`dns.listen` -> `0.0.0.0:53`). */
  overrides?: Readonly<Record<string, string>>;
  cwd?: string;
}

interface Leaf {
  path: string[];
  schema: TSchema;
  env: string;
}

function camelToSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Every settable key, read off the schema, with the env var that overrides it. */
function leaves(schema: TSchema = ConfigSchema, path: string[] = []): Leaf[] {
  const object = schema as Partial<TObject>;
  if (schema.type === 'object' && object.properties !== undefined) {
    return Object.entries(object.properties).flatMap(([key, child]) => leaves(child, [...path, key]));
  }
  return [{ path, schema, env: `PORTCULLIS_${path.map(camelToSnake).join('_')}` }];
}

export const CONFIG_KEYS: readonly Leaf[] = leaves();

/** Turns the text of an env var or flag into the value the schema expects at that key. */
function coerce(leaf: Leaf, text: string): unknown {
  const type = leaf.schema.type as string | undefined;
  if (type === 'integer' || type === 'number') return /^-?[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : text;
  if (type === 'boolean') return text === 'true' ? true : text === 'false' ? false : text;
  const trimmed = text.trim();
  if (type === 'array') {
    if (trimmed.startsWith('[')) return parseJson(trimmed);
    return trimmed === '' ? [] : trimmed.split(',').map((s) => s.trim());
  }
  if (type === 'object' || trimmed.startsWith('{')) return parseJson(trimmed);
  return text;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text; // the schema check reports it with the key's name
  }
}

function setIn(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

interface Override {
  origin: string;
  leaf: Leaf;
  value: unknown;
}

function collectOverrides(env: NodeJS.ProcessEnv, flags: Readonly<Record<string, string>>, problems: Problem[]): Override[] {
  const byEnv = new Map(CONFIG_KEYS.map((leaf) => [leaf.env, leaf]));
  const byKey = new Map(CONFIG_KEYS.map((leaf) => [leaf.path.join('.'), leaf]));
  const out: Override[] = [];
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith('PORTCULLIS_') || RESERVED_ENV.has(name) || text === undefined) continue;
    const leaf = byEnv.get(name);
    if (leaf === undefined) {
      problems.push({ file: `env ${name}`, message: 'unknown setting' });
      continue;
    }
    out.push({ origin: `env ${name}`, leaf, value: coerce(leaf, text) });
  }
  for (const [key, text] of Object.entries(flags)) {
    const leaf = byKey.get(key);
    if (leaf === undefined) {
      problems.push({ file: `flag --${key}`, message: 'unknown setting' });
      continue;
    }
    out.push({ origin: `flag --${key}`, leaf, value: coerce(leaf, text) });
  }
  return out;
}

function deepMerge<T>(base: T, over: unknown): T {
  if (typeof over !== 'object' || over === null || Array.isArray(over)) return (over ?? base) as T;
  if (typeof base !== 'object' || base === null || Array.isArray(base)) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(over)) out[key] = deepMerge(out[key], value);
  return out as T;
}

export function parseDurationMs(value: string | number): number {
  if (typeof value === 'number') return value * 1000;
  const match = /^([0-9]+)(ms|s|m|h|d)$/.exec(value);
  if (match === null) return Number.NaN;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

/** Loopback, RFC 1918, ULA and link-local listen addresses are private; 0.0.0.0 and :: are not. */
function isPrivateListenHost(host: string): boolean {
  if (host === 'localhost') return true;
  const ip = parseIp(host);
  if (ip === null) return false;
  return ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '::1/128', 'fc00::/7', 'fe80::/10'].some((text) => {
    const cidr = parseCidr(text);
    if (cidr.family !== ip.family) return false;
    const masked = maskWords(ip.words, cidr.prefix);
    return masked.every((word, i) => word === cidr.words[i]);
  });
}

function listName(source: string): string {
  const base = basename(source.split('?')[0] ?? source).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 8);
  return `${base === '' ? 'list' : base}-${hash}`;
}

/** Checks what the schema cannot: addresses, CIDRs, names, tokens, list entries. */
function semanticProblems(merged: MergedConfigFile, at: Locate, baseDir: string): { problems: Problem[]; lists: ListConfig[]; catalog: CatalogUpdateConfig | null } {
  const problems: Problem[] = [];
  const report = (path: (string | number)[], message: string): void => {
    problems.push({ ...at(path), message });
  };
  const checkListen = (path: (string | number)[], text: string | undefined): void => {
    if (text === undefined) return;
    const parsed = parseHostPort(text, { allowAnyPort: true });
    if (typeof parsed === 'string') report(path, parsed);
    else if (isIP(parsed.host) === 0 && parsed.host !== 'localhost') report(path, `"${parsed.host}" must be an IP address to listen on`);
  };
  checkListen(['dns', 'listen'], merged.dns.listen);
  checkListen(['dns', 'dot', 'listen'], merged.dns.dot?.listen);
  checkListen(['dns', 'doh', 'listen'], merged.dns.doh?.listen);
  merged.dns.allowClients?.forEach((cidr, i) => {
    try {
      parseCidr(cidr);
    } catch (e: unknown) {
      report(['dns', 'allowClients', i], errorMessage(e));
    }
  });
  // Never an open resolver by accident: a listener beyond private networks needs an explicit ACL.
  for (const [key, listen] of [['listen', merged.dns.listen], ['dot', merged.dns.dot?.listen], ['doh', merged.dns.doh?.listen]] as const) {
    const parsed = listen === undefined ? null : parseHostPort(listen, { allowAnyPort: true });
    if (parsed !== null && typeof parsed !== 'string' && isIP(parsed.host) !== 0 && !isPrivateListenHost(parsed.host) && merged.dns.allowClients === undefined) {
      report(['dns', key], `listening on ${parsed.host} reaches beyond private networks: set dns.allowClients to the networks allowed to query`);
    }
  }
  if ((merged.dns.dot !== undefined || merged.dns.doh !== undefined) && merged.dns.tls === undefined) {
    report(['dns', merged.dns.dot !== undefined ? 'dot' : 'doh'], 'DoT and DoH need dns.tls { cert, key }');
  }
  merged.dns.upstreams?.forEach((upstream, i) => {
    const parsed = parseUpstreamAddress(upstream);
    if (typeof parsed === 'string') report(['dns', 'upstreams', i], parsed);
  });
  checkListen(['proxy', 'tls', 'listen'], merged.proxy.tls?.listen);
  checkListen(['proxy', 'http', 'listen'], merged.proxy.http?.listen);
  checkListen(['proxy', 'transparent', 'tcp'], merged.proxy.transparent?.tcp);
  checkListen(['proxy', 'transparent', 'quic'], merged.proxy.transparent?.quic);
  if ((merged.proxy.transparent?.tcp !== undefined || merged.proxy.transparent?.quic !== undefined) && nativeBinding() === null) {
    report(['proxy', 'transparent'], `transparent listeners need the native addon built at install (Linux only): ${nativeLoadError()}`);
  }
  checkListen(['admin', 'listen'], merged.admin.listen);
  for (const [name, ip] of Object.entries(merged.proxy.hosts ?? {})) {
    if (tryParseRuleName(name) === null) report(['proxy', 'hosts', name], `"${name}" is not a valid host name`);
    if (isIP(ip) === 0) report(['proxy', 'hosts', name], `"${ip}" is not an IP address`);
  }
  merged.proxy.allowClients?.forEach((cidr, i) => {
    try {
      parseCidr(cidr);
    } catch (e: unknown) {
      report(['proxy', 'allowClients', i], errorMessage(e));
    }
  });
  // Never an open proxy by accident: as for DNS, a listener beyond private networks needs an ACL.
  for (const path of [['proxy', 'tls', 'listen'], ['proxy', 'http', 'listen'], ['proxy', 'transparent', 'tcp'], ['proxy', 'transparent', 'quic']] as const) {
    const listen = path[1] === 'transparent' ? merged.proxy.transparent?.[path[2]] : merged.proxy[path[1]]?.listen;
    const parsed = listen === undefined ? null : parseHostPort(listen, { allowAnyPort: true });
    if (parsed !== null && typeof parsed !== 'string' && isIP(parsed.host) !== 0 && !isPrivateListenHost(parsed.host) && merged.proxy.allowClients === undefined) {
      report([...path], `listening on ${parsed.host} reaches beyond private networks: set proxy.allowClients to the networks allowed to use the proxy`);
    }
  }
  merged.proxy.allowedUpstreamNetworks?.forEach((cidr, i) => {
    try {
      parseCidr(cidr);
    } catch (e: unknown) {
      report(['proxy', 'allowedUpstreamNetworks', i], errorMessage(e));
    }
  });
  merged.admin.tokens?.forEach((token, i) => {
    if ((token.token === undefined) === (token.tokenFile === undefined)) report(['admin', 'tokens', i], 'give exactly one of token and tokenFile');
  });
  const adminListen = parseHostPort(merged.admin.listen ?? DEFAULTS.adminListen, { allowAnyPort: true });
  if (typeof adminListen !== 'string' && !isLoopbackHost(adminListen.host) && (merged.admin.tokens ?? []).length === 0) {
    report(['admin', 'listen'], `listening on ${adminListen.host} without admin.tokens would open the admin API beyond this host: configure tokens, or listen on loopback`);
  }
  const names = new Set<string>();
  const lists: ListConfig[] = [];
  (merged.policy.lists ?? []).forEach((entry, i) => {
    const spec = typeof entry === 'string' ? { source: entry } : entry;
    const isRemote = /^https?:\/\//i.test(spec.source);
    if (!isRemote && /^[a-z][a-z0-9+.-]*:\/\//i.test(spec.source)) {
      report(['policy', 'lists', i], `"${spec.source}": only local paths and http(s) URLs are supported`);
      return;
    }
    const refreshMs = spec.refresh === undefined ? DEFAULTS.listRefreshDefaultMs : parseDurationMs(spec.refresh);
    if (refreshMs < DEFAULTS.listRefreshMinMs) report(['policy', 'lists', i, 'refresh'], `refresh must be at least ${DEFAULTS.listRefreshMinMs / 1000}s`);
    if (refreshMs > DEFAULTS.listRefreshMaxMs) report(['policy', 'lists', i, 'refresh'], `refresh must be at most ${DEFAULTS.listRefreshMaxMs / 86_400_000}d`);
    const name = spec.name ?? listName(spec.source);
    if (names.has(name)) report(['policy', 'lists', i], `two lists are named "${name}"`);
    names.add(name);
    lists.push({
      source: isRemote || isAbsolute(spec.source) ? spec.source : resolve(baseDir, spec.source),
      name,
      format: spec.format ?? 'auto',
      action: spec.action ?? 'block',
      app: spec.app ?? null,
      refreshMs,
      isRemote,
    });
  });
  // Keys the schema refused are gone from here (and reported already): hence Partial.
  const catalog = merged.policy.catalog as Partial<NonNullable<MergedConfigFile['policy']['catalog']>> | undefined;
  let catalogUpdates: CatalogUpdateConfig | null = null;
  if (catalog !== undefined) {
    const refreshMs = catalog.refresh === undefined ? DEFAULTS.catalogRefreshDefaultMs : parseDurationMs(catalog.refresh);
    if (refreshMs < DEFAULTS.catalogRefreshMinMs) report(['policy', 'catalog', 'refresh'], `refresh must be at least ${DEFAULTS.catalogRefreshMinMs / 1000}s`);
    if (refreshMs > DEFAULTS.listRefreshMaxMs) report(['policy', 'catalog', 'refresh'], `refresh must be at most ${DEFAULTS.listRefreshMaxMs / 86_400_000}d`);
    if (catalog.url !== undefined) {
      try {
        if (new URL(catalog.url).hostname === '') report(['policy', 'catalog', 'url'], 'the URL names no host');
      } catch {
        report(['policy', 'catalog', 'url'], `"${catalog.url}" is not a URL`);
      }
    }
    catalogUpdates = {
      url: catalog.url ?? '',
      publicKey: catalog.publicKey?.includes('-----BEGIN') === true ? catalog.publicKey : resolve(baseDir, catalog.publicKey ?? ''),
      refreshMs,
      ca: catalog.ca === undefined ? null : resolve(baseDir, catalog.ca),
    };
  }
  return { problems, lists, catalog: catalogUpdates };
}

function transparentConfig(file: NonNullable<ConfigFile['proxy']>['transparent']): TransparentConfig | null {
  if (file === undefined || (file.tcp === undefined && file.quic === undefined)) return null;
  const ms = (value: string | number | undefined, fallback: number): number => (value === undefined ? fallback : parseDurationMs(value));
  return {
    mode: file.mode ?? DEFAULTS.transparentMode,
    tcp: file.tcp ?? null,
    quic: file.quic ?? null,
    firstDataTimeoutMs: ms(file.firstDataTimeout, DEFAULTS.transparentFirstDataTimeoutMs),
    quicIdleTimeoutMs: ms(file.quicIdleTimeout, DEFAULTS.quicIdleTimeoutMs),
    quicMaxFlows: file.quicMaxFlows ?? DEFAULTS.quicMaxFlows,
  };
}

function resolveDns(dns: NonNullable<ConfigFile['dns']>, baseDir: string): DnsConfig {
  const tcp = dns.tcp ?? {};
  return {
    listen: dns.listen ?? DEFAULTS.dnsListen,
    upstreams: dns.upstreams ?? [...DEFAULTS.dnsUpstreams],
    upstreamCa: dns.upstreamCa === undefined ? null : resolve(baseDir, dns.upstreamCa),
    blockMode: dns.blockMode === 'null' ? 'nullip' : (dns.blockMode ?? DEFAULTS.dnsBlockMode),
    negativeTtlSec: dns.negativeTtl ?? DEFAULTS.dnsNegativeTtlSec,
    allowClients: dns.allowClients ?? null,
    rateLimit: {
      perSecond: dns.rateLimit?.perSecond ?? DEFAULTS.dnsRateLimitPerSec,
      burst: dns.rateLimit?.burst ?? DEFAULTS.dnsRateLimitBurst,
      action: dns.rateLimit?.action ?? 'refused',
      maxClients: DEFAULTS.dnsRateLimitMaxClients,
    },
    tcp: {
      idleTimeoutMs: tcp.idleTimeout === undefined ? DEFAULTS.dnsTcpIdleTimeoutMs : parseDurationMs(tcp.idleTimeout),
      maxConnections: tcp.maxConnections ?? DEFAULTS.dnsTcpMaxConnections,
      maxPipelined: tcp.maxPipelined ?? DEFAULTS.dnsTcpMaxPipelined,
    },
    cache: {
      maxEntries: dns.cache?.maxEntries ?? DEFAULTS.cacheMaxEntries,
      maxBytes: dns.cache?.maxBytes ?? DEFAULTS.cacheMaxBytes,
      serveStale: dns.cache?.serveStale ?? true,
    },
    bypass: {
      firefoxCanary: dns.bypass?.firefoxCanary ?? true,
      dohResolvers: dns.bypass?.dohResolvers ?? false,
      stripEch: dns.bypass?.stripEch ?? true,
    },
    tls: dns.tls === undefined ? null : { cert: resolve(baseDir, dns.tls.cert), key: resolve(baseDir, dns.tls.key) },
    dot: dns.dot ?? null,
    doh: dns.doh === undefined ? null : { listen: dns.doh.listen, path: dns.doh.path ?? DEFAULTS.dnsDohPath },
    workers: dns.workers ?? 1,
    udpBatching: dns.udpBatching ?? true,
  };
}

export interface LoadResult {
  config: Config | null;
  problems: Problem[];
  /** Where a config key came from (file and line, or the env var or flag that set it). */
  locate: Locate;
}

/**
 * `value` without the values at `paths` (those the schema refused), so that the semantic checks
 * can run on the rest in the same pass: an operator sees every problem of a file at once. A
 * refused list element takes its whole list out (removing one would shift the indexes named
 * in later problems).
 */
function withoutPaths(value: Record<string, unknown>, paths: readonly (string | number)[][]): Record<string, unknown> {
  const out = structuredClone(value);
  for (const path of paths) {
    const cut = path.findIndex((part) => typeof part === 'number');
    const target = cut === -1 ? path : path.slice(0, cut);
    if (target.length === 0) continue;
    let node: unknown = out;
    for (const part of target.slice(0, -1)) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
    if (typeof node === 'object' && node !== null) Reflect.deleteProperty(node, target.at(-1)!);
  }
  return out;
}

/** Loads, merges and checks the configuration; every problem names its file (or env/flag), field and line. */
export async function loadConfigChecked(options: LoadOptions = {}): Promise<LoadResult> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.PORTCULLIS_CONFIG;
  const file = explicit ?? (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE)) ? DEFAULT_CONFIG_FILE : undefined);
  const problems: Problem[] = [];
  const nowhere: Locate = (path) => ({ file: file ?? 'defaults', field: pathToField(path) });

  let source: YamlSource = { file: 'defaults', value: {}, lineOf: () => undefined };
  if (file !== undefined) {
    const path = resolve(cwd, file);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e: unknown) {
      return { config: null, problems: [{ file, message: `cannot read: ${errorMessage(e)}` }], locate: nowhere };
    }
    try {
      source = parseYaml(file, text);
    } catch (e: unknown) {
      // A syntax error carries its line; report it as a location, with its code.
      if (isPortcullisError(e) && typeof e.details.line === 'number' && typeof e.details.reason === 'string') {
        return { config: null, problems: [{ file, line: e.details.line, message: `${e.code}: ${e.details.reason}` }], locate: nowhere };
      }
      return { config: null, problems: [{ file, message: errorMessage(e) }], locate: nowhere };
    }
    if (source.value === null || source.value === undefined) source = { ...source, value: {} };
  }

  const overrides = collectOverrides(env, options.overrides ?? {}, problems);
  const fileValue = structuredClone(source.value) as Record<string, unknown>;
  for (const override of overrides) setIn(fileValue, override.leaf.path, override.value);
  const inFile = locateIn(source);
  const originOf: Locate = (path) => {
    const key = path.join('.');
    // The last override of a key wins, so report against it.
    const override = [...overrides].reverse().find((o) => key === o.leaf.path.join('.') || key.startsWith(`${o.leaf.path.join('.')}.`));
    return override === undefined ? inFile(path) : { file: override.origin, field: pathToField(path) };
  };
  const refused = schemaProblemsAt(ConfigSchema, fileValue, originOf);
  problems.push(...refused.map((r) => r.problem));
  // Not a mapping at all: nothing else can be checked.
  if (typeof fileValue !== 'object' || Array.isArray(fileValue)) return { config: null, problems, locate: originOf };

  const fileConfig = withoutPaths(fileValue, refused.map((r) => r.path)) as ConfigFile;
  const merged = deepMerge(structuredClone(DEFAULT_FILE), fileConfig); // a copy: the config must not share arrays with the defaults
  const baseDir = file === undefined ? cwd : dirname(resolve(cwd, file));
  const semantic = semanticProblems(merged, originOf, baseDir);
  problems.push(...semantic.problems);
  if (problems.length > 0) return { config: null, problems, locate: originOf };

  const storePath = merged.store.path ?? DEFAULTS.storePath;
  const config: Config = {
    source: file ?? 'defaults',
    dns: resolveDns(merged.dns, baseDir),
    proxy: {
      tls: { listen: merged.proxy.tls?.listen ?? DEFAULTS.proxyTlsListen, upstreamPort: merged.proxy.tls?.upstreamPort ?? DEFAULTS.proxyTlsUpstreamPort },
      http: { listen: merged.proxy.http?.listen ?? DEFAULTS.proxyHttpListen, upstreamPort: merged.proxy.http?.upstreamPort ?? DEFAULTS.proxyHttpUpstreamPort },
      hosts: Object.fromEntries(Object.entries(merged.proxy.hosts ?? {}).map(([name, ip]) => [normalizeQueryName(name) ?? name, ip])),
      allowedUpstreamNetworks: merged.proxy.allowedUpstreamNetworks ?? [],
      blockAction: merged.proxy.blockAction ?? DEFAULTS.proxyBlockAction,
      maxConnections: merged.proxy.maxConnections ?? DEFAULTS.proxyMaxConnections,
      maxConnectionsPerClient: merged.proxy.maxConnectionsPerClient ?? DEFAULTS.proxyMaxConnectionsPerClient,
      clientHelloTimeoutMs: merged.proxy.clientHelloTimeout === undefined ? DEFAULTS.clientHelloTimeoutMs : parseDurationMs(merged.proxy.clientHelloTimeout),
      clientHelloMaxBytes: merged.proxy.clientHelloMaxBytes ?? DEFAULTS.clientHelloMaxBytes,
      httpMaxHeadBytes: merged.proxy.httpMaxHeadBytes ?? DEFAULTS.httpMaxHeadBytes,
      connectTimeoutMs: merged.proxy.connectTimeout === undefined ? DEFAULTS.dialConnectTimeoutMs : parseDurationMs(merged.proxy.connectTimeout),
      idleTimeoutMs: merged.proxy.idleTimeout === undefined ? DEFAULTS.proxyIdleTimeoutMs : parseDurationMs(merged.proxy.idleTimeout),
      halfClosedTimeoutMs: merged.proxy.halfClosedTimeout === undefined ? DEFAULTS.proxyHalfClosedTimeoutMs : parseDurationMs(merged.proxy.halfClosedTimeout),
      allowClients: merged.proxy.allowClients ?? null,
      transparent: transparentConfig(merged.proxy.transparent),
    },
    admin: {
      listen: merged.admin.listen ?? DEFAULTS.adminListen,
      tokens: (merged.admin.tokens ?? []).map((t) => ({
        name: t.name,
        token: t.token ?? null,
        tokenFile: t.tokenFile === undefined ? null : resolve(baseDir, t.tokenFile),
        scopes: t.scopes,
      })),
      decisions: {
        kept: merged.admin.decisions?.kept ?? DEFAULTS.adminDecisionsKept,
        clientAddresses: merged.admin.decisions?.clientAddresses ?? false,
        names: merged.admin.decisions?.names ?? true,
      },
    },
    store: { path: isAbsolute(storePath) ? storePath : resolve(baseDir, storePath), redis: merged.store.redis ?? null },
    policy: { apps: merged.policy.apps ?? [...DEFAULTS.policyApps], extended: merged.policy.extended ?? [], lists: semantic.lists, catalog: semantic.catalog },
    nftables:
      merged.nftables === undefined
        ? null
        : { file: resolve(baseDir, merged.nftables.file), apply: merged.nftables.apply ?? false, table: merged.nftables.table ?? DEFAULTS.nftablesTable },
    log: { level: merged.log.level ?? 'info' },
  };
  return { config, problems: [], locate: originOf };
}

/** Loads the configuration or throws PCL_ERR_CONFIG_INVALID listing every problem. */
export async function loadConfig(options: LoadOptions = {}): Promise<Config> {
  const { config, problems } = await loadConfigChecked(options);
  if (config === null) throw configInvalid(problems);
  return config;
}

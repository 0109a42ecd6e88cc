import type { AppId, ProtocolId } from '../catalog/index.js';
import { formatCidr, maskWords, parseIp, type ParsedCidr, type ParsedIp } from '../match/ip.js';
import { labelFits } from '../match/name-pattern.js';
import { normalizeQueryName } from '../match/name.js';
import { nextReverseHash, REVERSE_HASH_START } from '../match/name-filter.js';
import { PortSet, type Protocol } from '../match/ports.js';
import type { CompiledRule, Layer } from './rule.js';
import { ruleIndexesOf, type RuleIndex } from './rule-index.js';

/** Entries in force, by kind. */
export interface RuleCounts {
  domains: number;
  cidrs: number;
  ports: number;
  protocols: number;
}

export interface DecisionQuery {
  /** Host name as the client sent it (qname, SNI, Host); normalised here. */
  name?: string | null;
  /** Destination (or answer) address: text, or already parsed on a hot path. */
  ip?: string | ParsedIp | null;
  port?: number | null;
  /** Transport of `port`; TCP unless said otherwise. */
  proto?: Protocol;
  /** A protocol recognised by its bytes (proxy/inspect/loco.ts): decided before names and addresses. */
  protocol?: ProtocolId | null;
  layer: Layer;
  /**
   * The client's address. Every decision carries it so that client groups can decide per
   * client; the global policy decides the same for every client.
   */
  client?: string | null;
}

export type Verdict = 'allow' | 'block';

/** One prefix of the address rules in force; `portSets` empty when its rules cover every port. */
export interface AddressPrefix {
  family: 4 | 6;
  words: Uint32Array;
  prefix: number;
  portSets: PortSet[];
}

export interface Decision {
  verdict: Verdict;
  app: AppId | null;
  /** The rule that decided, as `domain:kakao.com`, `host:x.y`, `cidr:147.92.128.0/17`; null when none matched. */
  rule: string | null;
  layer: Layer;
}

/** One enforced block, as the decisions log keeps it. `client` is the client's address. */
export interface BlockEvent {
  layer: Layer;
  app: AppId | null;
  rule: string | null;
  name: string | null;
  client: string;
}

export interface AppState {
  /** Apps whose rules are enforced. */
  enabled: ReadonlySet<AppId>;
  /** Apps whose extended tier is enforced too (only while the app is enabled). */
  extended: ReadonlySet<AppId>;
}

export interface SnapshotParts {
  version: number;
  /** Catalog entries and admin rules: small, rebuilt whole on every admin change. */
  overlay: RuleIndex;
  /** Extra lists: possibly millions of entries, rebuilt in the background. */
  lists: RuleIndex;
  apps: AppState;
}

// Scratch space for address lookups: decide() runs to completion synchronously, so one set of
// buffers serves every call without allocating.
const overlayValues = new Int32Array(129);
const overlayPrefixes = new Uint8Array(129);
const listValues = new Int32Array(129);
const listPrefixes = new Uint8Array(129);

const ALLOW_BY_LAYER: Record<Layer, Decision> = {
  dns: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'dns' }),
  tls: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'tls' }),
  http: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'http' }),
  quic: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'quic' }),
  ip: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'ip' }),
  protocol: Object.freeze({ verdict: 'allow', app: null, rule: null, layer: 'protocol' }),
};

/**
 * An immutable view of the whole policy. Readers call decide() without locks; a change builds
 * a new snapshot aside and the engine swaps one reference.
 *
 * Precedence (docs/policy.md):
 * 1. Names: the most specific matching name wins (a.b.kakao.com before kakao.com); at the same
 *    name, allow beats block.
 * 2. Addresses: the longest matching prefix wins; at the same prefix, allow beats block. A rule
 *    limited to ports only matches a query that carries one of them.
 * 3. Rules of a disabled app, or of a disabled extended tier, do not exist for matching.
 * 4. A name and an address are judged apart: either one blocked blocks. An allow rule lifts
 *    blocks of its own kind only, so a client cannot reach a blocked address by sending an
 *    allowed name in its SNI.
 */
export class PolicySnapshot {
  readonly version: number;
  readonly apps: AppState;
  private readonly overlay: RuleIndex;
  private readonly lists: RuleIndex;
  private readonly appPorts: ReadonlyMap<AppId, PortSet>;
  private readonly overlayActive: Uint8Array;
  private readonly listsActive: Uint8Array;

  constructor(parts: SnapshotParts) {
    this.version = parts.version;
    this.apps = parts.apps;
    this.overlay = parts.overlay;
    this.lists = parts.lists;
    this.overlayActive = activeRules(parts.overlay, parts.apps);
    this.listsActive = activeRules(parts.lists, parts.apps);
    this.appPorts = effectiveAppPorts(parts.overlay, this.overlayActive);
  }

  /** Same rules under a new version and app state: switching an app never rebuilds an index. */
  /** A snapshot that differs in some parts; switching an app never rebuilds an index. */
  with(version: number, changes: Partial<Omit<SnapshotParts, 'version'>>): PolicySnapshot {
    return new PolicySnapshot({
      version,
      overlay: changes.overlay ?? this.overlay,
      lists: changes.lists ?? this.lists,
      apps: changes.apps ?? this.apps,
    });
  }

  decide(query: DecisionQuery): Decision {
    const layer = query.layer;
    if (query.protocol !== undefined && query.protocol !== null) {
      const protocolHit = this.matchProtocol(query.protocol);
      if (protocolHit !== null && protocolHit.action === 'block') return toDecision(protocolHit, query.protocol, layer);
    }
    let nameHit: CompiledRule | null = null;
    let nameKey = '';
    if (query.name !== undefined && query.name !== null) {
      const name = normalizeQueryName(query.name);
      if (name !== null) {
        const levels = suffixLevels(name);
        // Most specific level first: the full name, then each parent on a label boundary.
        for (let level = levels - 1; level >= 0; level--) {
          const start = levelStarts[level]!;
          // level n holds the last n + 1 labels
          nameHit = this.matchNameLevel(name, start, levelHashes[level]!, 1 << Math.min(level, 31));
          if (nameHit !== null) {
            nameKey = start === 0 ? name : name.slice(start);
            break;
          }
        }
      }
    }
    if (nameHit !== null && nameHit.action === 'block') return toDecision(nameHit, nameKey, layer);

    let ipHit: CompiledRule | null = null;
    let ip: ParsedIp | null = null;
    let ipPrefix = 0;
    if (query.ip !== undefined && query.ip !== null) {
      ip = typeof query.ip === 'string' ? parseIp(query.ip) : query.ip;
      if (ip !== null) {
        const found = this.matchAddress(ip, query.port ?? null, query.proto ?? 'tcp');
        if (found !== null) {
          ipHit = found.candidate;
          ipPrefix = found.prefix;
        }
      }
    }
    if (ipHit !== null && ip !== null && (ipHit.action === 'block' || nameHit === null)) {
      return toDecision(ipHit, formatCidr(maskTo(ip, ipPrefix)), layer);
    }
    if (nameHit !== null) return toDecision(nameHit, nameKey, layer);
    return ALLOW_BY_LAYER[layer];
  }

  /** Rules in force per app (entries of enabled rules), for `apps`, metrics and the API. */
  ruleCounts(): Map<AppId | 'custom', RuleCounts> {
    const counts = new Map<AppId | 'custom', RuleCounts>();
    const add = (index: RuleIndex, active: Uint8Array): void => {
      index.rules.forEach((rule, i) => {
        if (active[i] !== 1) return;
        const key = rule.app ?? 'custom';
        const entry = counts.get(key) ?? { domains: 0, cidrs: 0, ports: 0, protocols: 0 };
        const n = index.entryCounts[i] ?? 0;
        if (rule.kind === 'port') entry.ports += n;
        else if (rule.kind === 'cidr') entry.cidrs += n;
        else if (rule.kind === 'protocol') entry.protocols += n;
        else entry.domains += n;
        counts.set(key, entry);
      });
    };
    add(this.overlay, this.overlayActive);
    add(this.lists, this.listsActive);
    return counts;
  }

  /**
   * Every address prefix some rule in force lists, with the port sets that limit those rules
   * (none: they cover every port). For exporting the IP layer; decide() stays the judge.
   */
  addressPrefixes(): AddressPrefix[] {
    const out: AddressPrefix[] = [];
    const collect = (index: RuleIndex, active: Uint8Array): void => {
      for (const trie of [index.v4, index.v6]) {
        const family = trie === index.v4 ? 4 : 6;
        trie.forEach((words, prefix, ref) => {
          const ruleIndexes = ruleIndexesOf(index, ref);
          const portSets: PortSet[] = [];
          let isActive = false;
          for (const i of ruleIndexes) {
            const rule = index.rules[i]!;
            if (active[i] !== 1) continue;
            isActive = true;
            if (rule.portScope === 'own' && rule.ports !== null) portSets.push(rule.ports);
            if (rule.portScope === 'app' && rule.app !== null) portSets.push(this.appPorts.get(rule.app) ?? new PortSet());
          }
          if (isActive) out.push({ family, words, prefix, portSets });
        });
      }
    };
    collect(this.overlay, this.overlayActive);
    collect(this.lists, this.listsActive);
    return out;
  }

  private matchProtocol(protocol: string): CompiledRule | null {
    for (const [index, active] of [
      [this.overlay, this.overlayActive],
      [this.lists, this.listsActive],
    ] as const) {
      const ref = index.protocols.get(protocol);
      const rule = ref === undefined ? null : pick(index, active, ref, null, null, 'tcp', EMPTY_PORTS);
      if (rule !== null) return rule;
    }
    return null;
  }

  /** The rule deciding one name level across both indexes: an allow before any block. */
  private matchNameLevel(name: string, start: number, hash: number, labelBit: number): CompiledRule | null {
    const overlay = (this.overlay.labelCounts & labelBit) === 0 ? null : matchName(this.overlay, this.overlayActive, name, start, hash);
    if (overlay !== null && overlay.action === 'allow') return overlay;
    const lists = (this.lists.labelCounts & labelBit) === 0 ? null : matchName(this.lists, this.listsActive, name, start, hash);
    if (lists !== null && lists.action === 'allow') return lists;
    return overlay ?? lists;
  }

  private matchAddress(ip: ParsedIp, port: number | null, proto: Protocol): { candidate: CompiledRule; prefix: number } | null {
    const v6 = ip.family === 6;
    const overlayCount = (v6 ? this.overlay.v6 : this.overlay.v4).matches(ip.words, overlayValues, overlayPrefixes);
    const listCount = (v6 ? this.lists.v6 : this.lists.v4).matches(ip.words, listValues, listPrefixes);
    // Walk both match lists from the longest prefix down; the first applicable prefix decides.
    let o = overlayCount - 1;
    let l = listCount - 1;
    while (o >= 0 || l >= 0) {
      const prefix = Math.max(o >= 0 ? overlayPrefixes[o]! : -1, l >= 0 ? listPrefixes[l]! : -1);
      let block: CompiledRule | null = null;
      if (o >= 0 && overlayPrefixes[o] === prefix) {
        const hit = pick(this.overlay, this.overlayActive, overlayValues[o]!, ip, port, proto, this.appPorts);
        o--;
        if (hit !== null) {
          if (hit.action === 'allow') return { candidate: hit, prefix };
          block = hit;
        }
      }
      if (l >= 0 && listPrefixes[l] === prefix) {
        const hit = pick(this.lists, this.listsActive, listValues[l]!, ip, port, proto, this.appPorts);
        l--;
        if (hit !== null) {
          if (hit.action === 'allow') return { candidate: hit, prefix };
          block ??= hit;
        }
      }
      if (block !== null) return { candidate: block, prefix };
    }
    return null;
  }
}

function matchName(index: RuleIndex, active: Uint8Array, name: string, start: number, hash: number): CompiledRule | null {
  const maySuffix = index.suffixFilter.mayHave(hash);
  const mayExact = start === 0 && index.exactFilter.mayHave(hash);
  const pattern = index.patterns.size === 0 ? null : matchPattern(index, active, name, start);
  if (pattern !== null && pattern.action === 'allow') return pattern;
  if (!maySuffix && !mayExact) return pattern;
  const key = start === 0 ? name : name.slice(start);
  const shard = hash & index.shardMask;
  let exact: CompiledRule | null = null;
  if (mayExact) {
    const ref = index.exact[shard]!.get(key);
    if (ref !== undefined) exact = pick(index, active, ref, null, null, 'tcp', EMPTY_PORTS);
    if (exact !== null && exact.action === 'allow') return exact;
  }
  const ref = maySuffix ? index.suffix[shard]!.get(key) : undefined;
  const suffix = ref === undefined ? null : pick(index, active, ref, null, null, 'tcp', EMPTY_PORTS);
  if (suffix !== null && suffix.action === 'allow') return suffix;
  return exact ?? suffix ?? pattern;
}

/** The label patterns whose parent is what follows this level's first label, and whose label fits it. */
function matchPattern(index: RuleIndex, active: Uint8Array, name: string, start: number): CompiledRule | null {
  const dot = name.indexOf('.', start);
  if (dot === -1) return null;
  const entries = index.patterns.get(name.slice(dot + 1));
  if (entries === undefined) return null;
  const label = name.slice(start, dot);
  let found: CompiledRule | null = null;
  for (const entry of entries) {
    if (!labelFits(entry, label)) continue;
    const rule = pick(index, active, entry.ref, null, null, 'tcp', EMPTY_PORTS);
    if (rule !== null && (found === null || rule.action === 'allow')) found = rule;
  }
  return found;
}

/**
 * Fills levelStarts/levelHashes with where each suffix of `name` starts and its reverse hash,
 * from the last label (index 0) to the whole name; returns how many. Names with more labels
 * than any rule can have (127) keep only their last 128 suffixes: deeper ones match nothing.
 */
function suffixLevels(name: string): number {
  let hash = REVERSE_HASH_START;
  let count = 0;
  for (let i = name.length - 1; i >= 0 && count < MAX_LEVELS; i--) {
    hash = nextReverseHash(hash, name.charCodeAt(i));
    if (i === 0 || name.charCodeAt(i - 1) === CODE_DOT) {
      levelStarts[count] = i;
      levelHashes[count] = hash;
      count++;
    }
  }
  return count;
}

const CODE_DOT = 0x2e;
const MAX_LEVELS = 128;
const levelStarts = new Int32Array(MAX_LEVELS);
const levelHashes = new Int32Array(MAX_LEVELS);

const EMPTY_PORTS: ReadonlyMap<AppId, PortSet> = new Map();

/** Among the rules behind one reference, the one that applies: an allow before any block. */
function pick(
  index: RuleIndex,
  active: Uint8Array,
  ref: number,
  ip: ParsedIp | null,
  port: number | null,
  proto: Protocol,
  appPorts: ReadonlyMap<AppId, PortSet>,
): CompiledRule | null {
  if (ref >= 0) {
    const rule = index.rules[ref]!;
    return active[ref] === 1 && portApplies(rule, ip, port, proto, appPorts) ? rule : null;
  }
  let block: CompiledRule | null = null;
  for (const ruleIndex of ruleIndexesOf(index, ref)) {
    const rule = index.rules[ruleIndex]!;
    if (active[ruleIndex] !== 1 || !portApplies(rule, ip, port, proto, appPorts)) continue;
    if (rule.action === 'allow') return rule;
    block ??= rule;
  }
  return block;
}

function portApplies(rule: CompiledRule, ip: ParsedIp | null, port: number | null, proto: Protocol, appPorts: ReadonlyMap<AppId, PortSet>): boolean {
  if (rule.portScope === 'all' || ip === null) return true;
  if (port === null) return false;
  if (rule.portScope === 'own') return rule.ports?.has(proto, port) ?? false;
  const ports = rule.app === null ? undefined : appPorts.get(rule.app);
  return ports?.has(proto, port) ?? false;
}

function activeRules(index: RuleIndex, apps: AppState): Uint8Array {
  const active = new Uint8Array(index.rules.length);
  index.rules.forEach((rule, i) => {
    if (rule.app === null) {
      active[i] = 1;
      return;
    }
    const on = apps.enabled.has(rule.app) && (rule.tier !== 'extended' || apps.extended.has(rule.app));
    active[i] = on ? 1 : 0;
  });
  return active;
}

/** Block ports of each app in force, less its allow ports. */
function effectiveAppPorts(overlay: RuleIndex, active: Uint8Array): Map<AppId, PortSet> {
  const ports = new Map<AppId, PortSet>();
  for (const action of ['block', 'allow'] as const) {
    overlay.rules.forEach((rule, i) => {
      if (rule.kind !== 'port' || rule.app === null || rule.action !== action || active[i] !== 1 || rule.ports === null) return;
      let set = ports.get(rule.app);
      if (set === undefined) {
        set = new PortSet();
        ports.set(rule.app, set);
      }
      if (action === 'block') set.addAll(rule.ports);
      else set.deleteAll(rule.ports);
    });
  }
  return ports;
}

function toDecision(hit: CompiledRule, key: string, layer: Layer): Decision {
  return { verdict: hit.action, app: hit.app, rule: `${hit.kind}:${hit.value ?? key}`, layer };
}

function maskTo(ip: ParsedIp, prefix: number): ParsedCidr {
  return { family: ip.family, words: maskWords(ip.words, prefix), prefix };
}

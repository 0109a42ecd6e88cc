import { DEFAULTS } from '../config/defaults.js';
import { CidrTrie } from '../match/cidr-trie.js';
import { NameFilter, reverseNameHash } from '../match/name-filter.js';
import type { ParsedCidr } from '../match/ip.js';
import type { NamePattern } from '../match/name-pattern.js';
import type { CompiledRule } from './rule.js';

/**
 * The lookup structures of one group of rules. Map values and trie values are references:
 * a non-negative number is a rule index, a number of -2 or less (-2 - g, see groupRef) names a
 * group of rule indexes for the rare key listed by several rules. -1 is never a reference: it
 * is the trie's "no value here".
 */
export interface RuleIndex {
  readonly rules: readonly CompiledRule[];
  /** How many entries (names, prefixes) each rule holds; for counts per app. */
  readonly entryCounts: readonly number[];
  /**
   * Name keys, sharded by their reverse hash (shard = hash & shardMask). Many small maps
   * instead of one big one: a Map grows by rehashing all of itself at once, and at a million
   * keys that single step would stall the event loop for a hundred milliseconds.
   */
  readonly suffix: readonly ReadonlyMap<string, number>[];
  readonly exact: readonly ReadonlyMap<string, number>[];
  readonly shardMask: number;
  /** Filters over the keys of `suffix` and `exact` (see match/name-filter.ts). */
  readonly suffixFilter: NameFilter;
  readonly exactFilter: NameFilter;
  readonly nameCount: number;
  /** Bit n-1 set when some key has n labels (bit 31: 32 or more): levels with none are skipped. */
  readonly labelCounts: number;
  readonly v4: CidrTrie;
  readonly v6: CidrTrie;
  readonly groups: readonly (readonly number[])[];
  /** Label patterns (`katalk-*.kgslb.com`) by their parent; a handful at most, so looked at one by one. */
  readonly patterns: ReadonlyMap<string, readonly PatternEntry[]>;
  /** Protocols recognised by their bytes (`loco`), by id. */
  readonly protocols: ReadonlyMap<string, number>;
}

/** One label pattern and the rules behind it (a reference, as for names). */
export interface PatternEntry {
  readonly prefix: string;
  readonly suffix: string;
  readonly text: string;
  readonly ref: number;
}

export class RuleIndexBuilder {
  private readonly rules: CompiledRule[] = [];
  private readonly entryCounts: number[] = [];
  private readonly suffix: Map<string, number>[];
  private readonly exact: Map<string, number>[];
  private readonly shardMask: number;
  private suffixFilter: NameFilter;
  private exactFilter: NameFilter;
  private labelCounts = 0;
  private suffixCount = 0;
  private exactCount = 0;
  private readonly v4 = new CidrTrie(32);
  private readonly v6 = new CidrTrie(128);
  private readonly groups: number[][] = [];
  private readonly patterns = new Map<string, PatternEntry[]>();
  private readonly protocols = new Map<string, number>();

  /** `expectedNames` sizes the shards and filters; a small index may leave it out. */
  constructor(expectedNames = 0) {
    let shards = 1;
    while (shards * SHARD_TARGET_KEYS < expectedNames) shards *= 2;
    this.shardMask = shards - 1;
    this.suffix = Array.from({ length: shards }, () => new Map<string, number>());
    this.exact = Array.from({ length: shards }, () => new Map<string, number>());
    this.suffixFilter = new NameFilter(expectedNames);
    this.exactFilter = new NameFilter(0);
  }

  addRule(rule: CompiledRule): number {
    this.rules.push(rule);
    this.entryCounts.push(0);
    return this.rules.length - 1;
  }

  /**
   * A port rule of an app: it holds no key of its own but widens the app's ports, which its
   * `app-ports` CIDRs match on. Counted as one entry.
   */
  addAppPortRule(rule: CompiledRule): number {
    const index = this.addRule(rule);
    this.entryCounts[index] = 1;
    return index;
  }

  addName(name: string, match: 'suffix' | 'exact', ruleIndex: number): void {
    this.addHashedName(name, reverseNameHash(name), match, ruleIndex);
  }

  private addHashedName(name: string, hash: number, match: 'suffix' | 'exact', ruleIndex: number): void {
    const map = (match === 'suffix' ? this.suffix : this.exact)[hash & this.shardMask]!;
    const existing = map.get(name);
    const merged = this.merge(existing, ruleIndex);
    if (merged === existing) return;
    map.set(name, merged);
    this.entryCounts[ruleIndex]!++;
    if (existing !== undefined) return;
    this.labelCounts |= labelCountBit(name);
    if (match === 'suffix') {
      this.suffixCount++;
      if (!this.suffixFilter.fits(this.suffixCount)) this.suffixFilter = this.refill(this.suffix, this.suffixCount);
      this.suffixFilter.add(hash);
    } else {
      this.exactCount++;
      if (!this.exactFilter.fits(this.exactCount)) this.exactFilter = this.refill(this.exact, this.exactCount);
      this.exactFilter.add(hash);
    }
  }

  /** A label pattern: matched at the level of its label, with subdomains, like a suffix name. */
  addPattern(pattern: NamePattern, ruleIndex: number): void {
    const entries = this.patterns.get(pattern.parent) ?? [];
    const at = entries.findIndex((e) => e.text === pattern.text);
    const existing = at === -1 ? undefined : entries[at]!.ref;
    const merged = this.merge(existing, ruleIndex);
    if (merged === existing) return;
    const entry: PatternEntry = { prefix: pattern.prefix, suffix: pattern.suffix, text: pattern.text, ref: merged };
    if (at === -1) entries.push(entry);
    else entries[at] = entry;
    this.patterns.set(pattern.parent, entries);
    this.entryCounts[ruleIndex]!++;
    this.labelCounts |= labelCountBit(pattern.text);
  }

  addProtocol(protocol: string, ruleIndex: number): void {
    const existing = this.protocols.get(protocol);
    const merged = this.merge(existing, ruleIndex);
    if (merged === existing) return;
    this.protocols.set(protocol, merged);
    this.entryCounts[ruleIndex]!++;
  }

  addCidr(cidr: ParsedCidr, ruleIndex: number): void {
    const trie = cidr.family === 4 ? this.v4 : this.v6;
    const found = trie.get(cidr.words, cidr.prefix);
    const existing = found === -1 ? undefined : found;
    const merged = this.merge(existing, ruleIndex);
    if (merged === existing) return;
    trie.set(cidr.words, cidr.prefix, merged);
    this.entryCounts[ruleIndex]!++;
  }

  /**
   * Adds many names in slices, yielding to the event loop between slices so a million-entry
   * list never stalls queries being answered meanwhile. Names go in shard by shard: filled
   * evenly, every shard would double (and rehash) in the same slice, which together is as
   * long a pause as one big map's rehash.
   */
  async addNamesSliced(names: readonly string[], match: 'suffix' | 'exact', ruleIndex: number): Promise<void> {
    const slice = DEFAULTS.snapshotBuildSliceEntries;
    const hashes = new Int32Array(names.length);
    const shardStarts = new Int32Array(this.shardMask + 2);
    for (let start = 0; start < names.length; start += slice) {
      const end = Math.min(names.length, start + slice);
      for (let i = start; i < end; i++) {
        const hash = reverseNameHash(names[i]!);
        hashes[i] = hash;
        shardStarts[(hash & this.shardMask) + 1]!++;
      }
      await yieldToEventLoop();
    }
    for (let shard = 1; shard < shardStarts.length; shard++) shardStarts[shard]! += shardStarts[shard - 1]!;
    const order = new Int32Array(names.length);
    const next = shardStarts.slice(0, -1);
    for (let i = 0; i < names.length; i++) order[next[hashes[i]! & this.shardMask]!++] = i;
    for (let start = 0; start < order.length; start += slice) {
      const end = Math.min(order.length, start + slice);
      for (let k = start; k < end; k++) {
        const i = order[k]!;
        this.addHashedName(names[i]!, hashes[i]!, match, ruleIndex);
      }
      if (end < order.length) await yieldToEventLoop();
    }
  }

  async addCidrsSliced(cidrs: readonly ParsedCidr[], ruleIndex: number): Promise<void> {
    const slice = DEFAULTS.snapshotBuildSliceEntries;
    for (let start = 0; start < cidrs.length; start += slice) {
      const end = Math.min(cidrs.length, start + slice);
      for (let i = start; i < end; i++) this.addCidr(cidrs[i]!, ruleIndex);
      if (end < cidrs.length) await yieldToEventLoop();
    }
  }

  build(): RuleIndex {
    return {
      rules: this.rules,
      entryCounts: this.entryCounts,
      suffix: this.suffix,
      exact: this.exact,
      shardMask: this.shardMask,
      suffixFilter: this.suffixFilter,
      exactFilter: this.exactFilter,
      nameCount: this.suffixCount + this.exactCount,
      labelCounts: this.labelCounts,
      v4: this.v4,
      v6: this.v6,
      groups: this.groups,
      patterns: this.patterns,
      protocols: this.protocols,
    };
  }

  /**
   * A filter outgrown by unannounced keys is rebuilt twice as large. Only small indexes get
   * here: large ones are announced to the constructor.
   */
  private refill(shards: readonly Map<string, number>[], count: number): NameFilter {
    const filter = new NameFilter(count * 2);
    for (const map of shards) for (const key of map.keys()) filter.add(reverseNameHash(key));
    return filter;
  }

  /** Returns the reference for `existing` plus `ruleIndex`; the same reference when already there. */
  private merge(existing: number | undefined, ruleIndex: number): number {
    if (existing === undefined) return ruleIndex;
    if (existing >= 0) {
      if (existing === ruleIndex) return existing;
      this.groups.push([existing, ruleIndex]);
      return groupRef(this.groups.length - 1);
    }
    const group = this.groups[groupIndexOf(existing)]!;
    if (group.includes(ruleIndex)) return existing;
    group.push(ruleIndex);
    return existing;
  }
}

/** The reference of group `g`. */
function groupRef(g: number): number {
  return -2 - g;
}

function groupIndexOf(ref: number): number {
  return -2 - ref;
}

/** The rule indexes a reference stands for. */
export function ruleIndexesOf(index: RuleIndex, ref: number): readonly number[] {
  return ref >= 0 ? [ref] : index.groups[groupIndexOf(ref)]!;
}

export function labelCountBit(name: string): number {
  let labels = 1;
  for (let i = 0; i < name.length && labels < 32; i++) if (name.charCodeAt(i) === 0x2e) labels++;
  return 1 << (labels - 1);
}

/** Keys per shard the builder aims for: a shard's rehash stays well under a millisecond. */
const SHARD_TARGET_KEYS = 16_384;

export const EMPTY_INDEX: RuleIndex = new RuleIndexBuilder().build();

export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

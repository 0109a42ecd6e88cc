import { DEFAULTS } from '../config/defaults.js';
import { CidrTrie } from '../match/cidr-trie.js';
import type { ParsedCidr } from '../match/ip.js';
import type { CompiledRule } from './rule.js';

/**
 * The lookup structures of one group of rules. Map values and trie values are references:
 * a non-negative number is a rule index, a negative one (-1 - g) names a group of rule indexes
 * for the rare key listed by several rules.
 */
export interface RuleIndex {
  readonly rules: readonly CompiledRule[];
  /** How many entries (names, prefixes) each rule holds; for counts per app. */
  readonly entryCounts: readonly number[];
  readonly suffix: ReadonlyMap<string, number>;
  readonly exact: ReadonlyMap<string, number>;
  readonly v4: CidrTrie;
  readonly v6: CidrTrie;
  readonly groups: readonly (readonly number[])[];
}

export class RuleIndexBuilder {
  private readonly rules: CompiledRule[] = [];
  private readonly entryCounts: number[] = [];
  private readonly suffix = new Map<string, number>();
  private readonly exact = new Map<string, number>();
  private readonly v4 = new CidrTrie(32);
  private readonly v6 = new CidrTrie(128);
  private readonly groups: number[][] = [];

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
    const map = match === 'suffix' ? this.suffix : this.exact;
    const existing = map.get(name);
    const merged = this.merge(existing, ruleIndex);
    if (merged === existing) return;
    map.set(name, merged);
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
   * list never stalls queries being answered meanwhile.
   */
  async addNamesSliced(names: readonly string[], match: 'suffix' | 'exact', ruleIndex: number): Promise<void> {
    const slice = DEFAULTS.snapshotBuildSliceEntries;
    for (let start = 0; start < names.length; start += slice) {
      const end = Math.min(names.length, start + slice);
      for (let i = start; i < end; i++) this.addName(names[i]!, match, ruleIndex);
      if (end < names.length) await yieldToEventLoop();
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
      v4: this.v4,
      v6: this.v6,
      groups: this.groups,
    };
  }

  /** Returns the reference for `existing` plus `ruleIndex`; the same reference when already there. */
  private merge(existing: number | undefined, ruleIndex: number): number {
    if (existing === undefined) return ruleIndex;
    if (existing >= 0) {
      if (existing === ruleIndex) return existing;
      this.groups.push([existing, ruleIndex]);
      return -this.groups.length;
    }
    const group = this.groups[-1 - existing]!;
    if (group.includes(ruleIndex)) return existing;
    group.push(ruleIndex);
    return existing;
  }
}

export const EMPTY_INDEX: RuleIndex = new RuleIndexBuilder().build();

export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

import { CidrTrie } from './cidr-trie.js';
import { parseCidr, type ParsedCidr, type ParsedIp } from './ip.js';

/**
 * A set of IPv4 and IPv6 prefixes over two CidrTries, each prefix carrying a non-negative integer
 * chosen by the caller (an index into its own table). Lookups take a parsed address, so
 * IPv4-mapped IPv6 has already been folded to IPv4 by parseIp; they allocate nothing.
 */
export class PrefixSet {
  private readonly v4 = new CidrTrie(32);
  private readonly v6 = new CidrTrie(128);
  // Scratch for CidrTrie.matches (bits + 1 entries); lookups are synchronous, so one pair is enough.
  private readonly values = new Int32Array(129);
  private readonly prefixes = new Uint8Array(129);

  /** Parses every CIDR (PCL_ERR_INVALID_CIDR on the first bad one); each carries its index. */
  static fromCidrs(networks: readonly string[]): PrefixSet {
    const set = new PrefixSet();
    networks.forEach((text, index) => {
      set.add(parseCidr(text), index);
    });
    return set;
  }

  get size(): number {
    return this.v4.size + this.v6.size;
  }

  /** Stores `value` (a non-negative integer) at the prefix, replacing what was there. */
  add(cidr: ParsedCidr, value = 0): void {
    (cidr.family === 4 ? this.v4 : this.v6).set(cidr.words, cidr.prefix, value);
  }

  /** The value of the longest stored prefix containing the address, or -1 when none does. */
  longestMatch(ip: ParsedIp): number {
    const count = (ip.family === 4 ? this.v4 : this.v6).matches(ip.words, this.values, this.prefixes);
    return count === 0 ? -1 : this.values[count - 1]!;
  }

  has(ip: ParsedIp): boolean {
    return this.longestMatch(ip) !== -1;
  }
}

import { parseIp } from './ip.js';
import { PrefixSet } from './prefix-set.js';

/** Networks allowed to use DNS and the proxy when no ACL is configured: loopback, RFC 1918, ULA. */
export const DEFAULT_CLIENT_NETWORKS = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '::1/128', 'fc00::/7'];

/** Who may use a listener: a prefix set over client addresses (IPv4-mapped IPv6 counts as IPv4). */
export class ClientAcl {
  private readonly networks: PrefixSet;
  /**
   * Verdicts of recent client addresses: clients repeat, and parsing the address text costs
   * more than the rest of a cache hit. Bounded; cleared whole when full.
   */
  private readonly recent = new Map<string, boolean>();

  constructor(networks: readonly string[]) {
    this.networks = PrefixSet.fromCidrs(networks);
  }

  allows(address: string): boolean {
    const known = this.recent.get(address);
    if (known !== undefined) return known;
    const ip = parseIp(address);
    const verdict = ip !== null && this.networks.has(ip);
    if (this.recent.size >= ACL_MEMO_ENTRIES) this.recent.clear();
    this.recent.set(address, verdict);
    return verdict;
  }
}

const ACL_MEMO_ENTRIES = 4096;

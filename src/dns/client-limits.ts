import { parseIp } from '../match/ip.js';
import { PrefixSet } from '../match/prefix-set.js';

/** Networks allowed to query when no ACL is configured: loopback, RFC 1918, ULA. */
export const DEFAULT_CLIENT_NETWORKS = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '::1/128', 'fc00::/7'];

/** Who may query: a prefix set over client addresses (IPv4-mapped IPv6 counts as IPv4). */
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

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/**
 * Per-client token buckets. The table is bounded: when full, the oldest half is dropped (a
 * dropped client just starts with a full bucket again), so a flood of spoofed sources cannot
 * grow memory without limit.
 */
export class ClientRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly maxClients: number;

  constructor(options: { perSecond: number; burst: number; maxClients: number }) {
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.maxClients = options.maxClients;
  }

  /** Takes one token for the client; false when its bucket is empty. */
  take(client: string, nowMs: number): boolean {
    if (this.perSecond <= 0) return true;
    let bucket = this.buckets.get(client);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxClients) this.evictOldest();
      bucket = { tokens: this.burst, updatedMs: nowMs };
      this.buckets.set(client, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.updatedMs) * this.perSecond) / 1000);
      bucket.updatedMs = nowMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private evictOldest(): void {
    let toDrop = Math.ceil(this.buckets.size / 2);
    for (const key of this.buckets.keys()) {
      if (toDrop-- <= 0) break;
      this.buckets.delete(key);
    }
  }
}

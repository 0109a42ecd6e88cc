import { CidrTrie } from '../match/cidr-trie.js';
import { parseCidr, parseIp } from '../match/ip.js';

/** Networks allowed to query when no ACL is configured: loopback, RFC 1918, ULA. */
export const DEFAULT_CLIENT_NETWORKS = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '::1/128', 'fc00::/7'];

/** Who may query: a prefix set over client addresses (IPv4-mapped IPv6 counts as IPv4). */
export class ClientAcl {
  private readonly v4 = new CidrTrie(32);
  private readonly v6 = new CidrTrie(128);
  private readonly values = new Int32Array(129);
  private readonly prefixes = new Uint8Array(129);

  constructor(networks: readonly string[]) {
    for (const text of networks) {
      const cidr = parseCidr(text);
      (cidr.family === 4 ? this.v4 : this.v6).set(cidr.words, cidr.prefix, 1);
    }
  }

  allows(address: string): boolean {
    const ip = parseIp(address);
    if (ip === null) return false;
    return (ip.family === 4 ? this.v4 : this.v6).matches(ip.words, this.values, this.prefixes) > 0;
  }
}

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

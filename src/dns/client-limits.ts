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

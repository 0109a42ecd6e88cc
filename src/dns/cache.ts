import { LRUCache } from 'lru-cache';
import type { Decision } from '../policy/index.js';
import { DEFAULTS } from '../config/defaults.js';
import { buildOpt, plainOpt, truncateForUdp, maxUdpResponse, walkResponse } from './message.js';
import { HEADER_BYTES, RCODE, TYPE, type Query } from './wire.js';

/**
 * Wire-format answer cache. A hit is served by copying the stored bytes and patching the ID,
 * the question (so the client's 0x20 case comes back), RD/CD and the TTLs; nothing is parsed
 * or encoded. Entries are bounded by count and bytes (LRU); expiry is tracked here, not by
 * lru-cache timers (ttlAutopurge makes inserts several times slower). Expired entries stay
 * until evicted so they can be served stale when every upstream fails (RFC 8767).
 */
export interface CacheLimits {
  maxEntries: number;
  maxBytes: number;
  maxTtlSec: number;
  minTtlSec: number;
  negativeMaxTtlSec: number;
  staleMaxSec: number;
  staleAnswerTtlSec: number;
}

export const DEFAULT_CACHE_LIMITS: CacheLimits = {
  maxEntries: DEFAULTS.cacheMaxEntries,
  maxBytes: DEFAULTS.cacheMaxBytes,
  maxTtlSec: DEFAULTS.cacheMaxTtlSec,
  minTtlSec: DEFAULTS.cacheMinTtlSec,
  negativeMaxTtlSec: DEFAULTS.cacheNegativeMaxTtlSec,
  staleMaxSec: DEFAULTS.cacheStaleMaxSec,
  staleAnswerTtlSec: DEFAULTS.cacheStaleAnswerTtlSec,
};

export interface CacheEntry {
  /** The response without OPT, ID 0. Never modified after insertion. */
  wire: Buffer;
  /**
   * Response inspection memo (CNAME targets and addresses against the policy), valid for one
   * policy version; a rule change makes the next hit inspect again. The only mutable field.
   */
  inspection: { version: number; blockedBy: Decision | null } | null;
  questionEnd: number;
  ttlOffsets: Uint32Array;
  storedAtMs: number;
  expiresAtMs: number;
  staleUntilMs: number;
}

export type CacheLookup = { entry: CacheEntry; isFresh: boolean } | undefined;

const FLAG_RD_CD = 0x0110;
/** Bytes an entry costs beyond its wire (key, object, offsets): a rough, fixed estimate. */
const ENTRY_OVERHEAD_BYTES = 160;

export function cacheKey(query: Pick<Query, 'qname' | 'qtype' | 'qclass' | 'flags'>, dnssecOk: boolean): string {
  return `${query.qname}|${query.qtype}|${query.qclass}|${dnssecOk ? 1 : 0}${(query.flags & 0x0010) !== 0 ? 1 : 0}`;
}

export class AnswerCache {
  private readonly lru: LRUCache<string, CacheEntry>;
  private readonly limits: CacheLimits;

  constructor(limits: CacheLimits = DEFAULT_CACHE_LIMITS) {
    this.limits = limits;
    this.lru = new LRUCache<string, CacheEntry>({
      max: limits.maxEntries,
      maxSize: limits.maxBytes,
      sizeCalculation: (entry, key) => entry.wire.length + key.length + ENTRY_OVERHEAD_BYTES,
    });
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  clear(): void {
    this.lru.clear();
  }

  /** A fresh or stale-but-servable entry. */
  lookup(key: string, nowMs: number): CacheLookup {
    const entry = this.lru.get(key);
    if (entry === undefined) return undefined;
    if (nowMs < entry.expiresAtMs) return { entry, isFresh: true };
    if (nowMs < entry.staleUntilMs) return { entry, isFresh: false };
    this.lru.delete(key);
    return undefined;
  }

  /**
   * Stores a prepared upstream answer (no OPT). Positive answers live for their smallest TTL;
   * NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308); SERVFAIL and answers without a
   * usable TTL are not stored. Returns whether it was stored.
   */
  store(key: string, message: Buffer, nowMs: number): boolean {
    const walked = walkResponse(message);
    if (walked === null) return false;
    const rcode = message[3]! & 0xf;
    const answers = walked.records.filter((r) => r.section === 'answer');
    let ttlSec: number;
    if (rcode === RCODE.NOERROR && answers.length > 0) {
      ttlSec = Math.min(...answers.map((r) => r.ttl));
      ttlSec = Math.min(Math.max(ttlSec, this.limits.minTtlSec), this.limits.maxTtlSec);
    } else if (rcode === RCODE.NXDOMAIN || rcode === RCODE.NOERROR) {
      const soa = walked.records.find((r) => r.section === 'authority' && r.type === TYPE.SOA);
      if (soa === undefined || soa.rdEnd - soa.rdStart < 20) return false;
      const minimum = message.readUInt32BE(soa.rdEnd - 4);
      ttlSec = Math.min(soa.ttl, minimum, this.limits.negativeMaxTtlSec);
    } else {
      return false;
    }
    if (ttlSec <= 0) return false;
    const wire = Buffer.from(message);
    wire.writeUInt16BE(0, 0);
    const ttlOffsets = Uint32Array.from(walked.records.map((r) => r.ttlOffset));
    const expiresAtMs = nowMs + ttlSec * 1000;
    this.lru.set(key, { wire, inspection: null, questionEnd: walked.questionEnd, ttlOffsets, storedAtMs: nowMs, expiresAtMs, staleUntilMs: expiresAtMs + this.limits.staleMaxSec * 1000 });
    return true;
  }

  /**
   * The stored answer for this client: a copy with its ID, question bytes, RD/CD and aged
   * TTLs (a stale answer gets the short stale TTL), plus our OPT when the client sent EDNS.
   * Null when the client's question cannot be laid over the stored one (compressed question).
   */
  serve(lookup: NonNullable<CacheLookup>, query: Query, queryBuf: Uint8Array, nowMs: number, transport: 'udp' | 'tcp'): Buffer | null {
    const { entry, isFresh } = lookup;
    // A stale answer says so (RFC 8914): 3 Stale Answer, 19 Stale NXDOMAIN Answer.
    const opt = isFresh || query.edns === null ? undefined : staleOpt(query.edns.dnssecOk, (entry.wire[3]! & 0xf) === RCODE.NXDOMAIN);
    const out = renderAnswer(entry.wire, entry.questionEnd, query, queryBuf, opt);
    if (out === null) return null;
    const ageSec = Math.floor((nowMs - entry.storedAtMs) / 1000);
    for (const offset of entry.ttlOffsets) {
      const ttl = isFresh ? Math.max(0, out.readUInt32BE(offset) - ageSec) : this.limits.staleAnswerTtlSec;
      out.writeUInt32BE(ttl, offset);
    }
    return fitTransport(out, query, queryBuf, transport);
  }
}

/** An answer straight from upstream (prepared, not stored) for this client. */
export function serveUncached(message: Buffer, questionEnd: number, query: Query, queryBuf: Uint8Array, transport: 'udp' | 'tcp'): Buffer | null {
  const out = renderAnswer(message, questionEnd, query, queryBuf);
  return out === null ? null : fitTransport(out, query, queryBuf, transport);
}

export const EDE_STALE_ANSWER = 3;
export const EDE_STALE_NXDOMAIN = 19;

/** The OPT records of stale answers, by DO bit and NXDOMAIN: four, built once. */
const STALE_OPTS = new Map<string, Buffer>();

function staleOpt(dnssecOk: boolean, isNxdomain: boolean): Buffer {
  const key = `${dnssecOk ? 1 : 0}${isNxdomain ? 1 : 0}`;
  let opt = STALE_OPTS.get(key);
  if (opt === undefined) {
    opt = buildOpt({ udpSize: 0, version: 0, dnssecOk }, { extendedRcode: isNxdomain ? RCODE.NXDOMAIN : RCODE.NOERROR, ede: isNxdomain ? { code: EDE_STALE_NXDOMAIN, text: 'stale NXDOMAIN: upstreams unreachable' } : { code: EDE_STALE_ANSWER, text: 'stale answer: upstreams unreachable' } });
    STALE_OPTS.set(key, opt);
  }
  return opt;
}

/** Copy of `wire` with the client's ID, RD/CD, question bytes and our OPT (`opt`, or the plain one). */
function renderAnswer(wire: Buffer, questionEnd: number, query: Query, queryBuf: Uint8Array, withOpt?: Buffer): Buffer | null {
  if (query.isQnameCompressed || query.questionEnd !== questionEnd) return null;
  const opt = query.edns === null ? null : (withOpt ?? plainOpt(query.edns));
  const out = Buffer.allocUnsafe(wire.length + (opt?.length ?? 0));
  wire.copy(out);
  out.writeUInt16BE(query.id, 0);
  out.writeUInt16BE((out.readUInt16BE(2) & ~FLAG_RD_CD) | (query.flags & FLAG_RD_CD), 2);
  out.set(queryBuf.subarray(HEADER_BYTES, query.questionEnd), HEADER_BYTES);
  if (opt !== null) {
    opt.copy(out, wire.length);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  return out;
}

function fitTransport(out: Buffer, query: Query, queryBuf: Uint8Array, transport: 'udp' | 'tcp'): Buffer {
  return transport === 'udp' && out.length > maxUdpResponse(query.edns) ? truncateForUdp(out, query, queryBuf) : out;
}

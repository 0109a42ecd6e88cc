import { cacheKey, type AnswerCache } from './cache.js';
import { recordAddress, walkResponse } from './message.js';
import { prepareUpstreamAnswer } from './rewrite.js';
import type { UpstreamResolver } from './upstream-types.js';
import { CLASS_IN, RCODE, TYPE, encodeName } from './wire.js';

/** What the proxy asks of DNS: the addresses of a name, as the gateway's resolver knows them. */
export interface AddressResolver {
  /** IPv4 addresses first, then IPv6; empty when the name has none. Rejects when upstreams fail. */
  resolve(name: string): Promise<string[]>;
}

function addressesOf(message: Buffer, type: number): string[] {
  if ((message[3]! & 0xf) !== RCODE.NOERROR) return [];
  const walked = walkResponse(message);
  if (walked === null) return [];
  const out: string[] = [];
  for (const record of walked.records) {
    if (record.section !== 'answer' || record.type !== type) continue;
    const address = recordAddress(message, record);
    if (address !== null) out.push(address);
  }
  return out;
}

/**
 * Resolves through the same answer cache the DNS listener serves from, then the upstream pool:
 * a fresh cached answer (positive or negative, RFC 2308) is used until its TTL runs out, and an
 * answer fetched here is stored for the DNS listener too. Concurrent lookups of one name share
 * one upstream exchange (the pool coalesces questions in flight).
 */
export function createAddressResolver(upstream: UpstreamResolver, cache: AnswerCache): AddressResolver {
  const ask = async (name: string, qtype: number): Promise<string[]> => {
    const key = cacheKey({ qname: name, qtype, qclass: CLASS_IN, flags: 0 }, false);
    const hit = cache.lookup(key, Date.now());
    if (hit?.isFresh === true) return addressesOf(hit.entry.wire, qtype);
    const answer = await upstream.query({ nameWire: encodeName(name), name, qtype, qclass: CLASS_IN, dnssecOk: false, checkingDisabled: false });
    const prepared = prepareUpstreamAnswer(answer.message, { stripEch: false });
    if (prepared === null) return [];
    cache.store(key, prepared.message, Date.now());
    return addressesOf(prepared.message, qtype);
  };
  return {
    async resolve(name) {
      const [v4, v6] = await Promise.allSettled([ask(name, TYPE.A), ask(name, TYPE.AAAA)]);
      const out = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
      if (out.length === 0 && v4.status === 'rejected') throw v4.reason;
      return out;
    },
  };
}

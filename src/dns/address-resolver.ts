import { recordAddress, walkResponse } from './message.js';
import type { UpstreamResolver } from './upstream-types.js';
import { CLASS_IN, RCODE, TYPE, encodeName } from './wire.js';

/** What the proxy asks of DNS: the addresses of a name, through the resolver's upstream path. */
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

export function createAddressResolver(upstream: UpstreamResolver): AddressResolver {
  const ask = async (name: string, type: number): Promise<string[]> => {
    const answer = await upstream.query({ nameWire: encodeName(name), name, qtype: type, qclass: CLASS_IN, dnssecOk: false, checkingDisabled: false });
    return addressesOf(answer.message, type);
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

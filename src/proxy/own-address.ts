import { networkInterfaces } from 'node:os';
import { unmapIpv4 } from '../match/ip.js';
import type { Endpoint } from '../util/native-addon.js';

/** How long the host's interface addresses are trusted before they are read again. */
const LOCAL_ADDRESSES_TTL_MS = 30_000;

/**
 * Tells a destination that is an intercepting listener itself — reached directly, not
 * redirected — from a real one. Dialling or relaying to it would loop back into the listener.
 */
export class OwnAddresses {
  private cache = { at: Number.NEGATIVE_INFINITY, addresses: new Set<string>() };

  /** Whether `destination` is `listener`: its port, and its address or any of this host's. */
  isListener(destination: Endpoint, listener: Endpoint): boolean {
    if (destination.port !== listener.port) return false;
    const address = unmapIpv4(destination.address);
    if (unmapIpv4(listener.address) === address) return true;
    const now = performance.now();
    if (now - this.cache.at > LOCAL_ADDRESSES_TTL_MS) {
      const addresses = new Set<string>();
      for (const list of Object.values(networkInterfaces())) for (const entry of list ?? []) addresses.add(entry.address);
      this.cache = { at: now, addresses };
    }
    return this.cache.addresses.has(address);
  }
}

import { APP_IDS } from '../catalog/apps.js';

/**
 * Every default and every limit in one frozen object, named with units. The config schema and
 * the modules read their limits from here; no other literal in src/ is a limit.
 */
export const DEFAULTS = Object.freeze({
  dnsListen: '127.0.0.1:5353',
  dnsUpstreams: Object.freeze(['1.1.1.1:53']),
  proxyTlsListen: '127.0.0.1:8443',
  proxyTlsUpstreamPort: 443,
  proxyHttpListen: '127.0.0.1:8080',
  proxyHttpUpstreamPort: 80,
  adminListen: '127.0.0.1:9090',
  storePath: './data',
  policyApps: APP_IDS,

  /** Extra lists: how much one download or file may hold, how long a fetch may take. */
  listFetchMaxBytes: 64 * 1024 * 1024,
  listFetchTimeoutMs: 30_000,
  listRefreshMinMs: 60_000,
  listRefreshDefaultMs: 24 * 60 * 60 * 1000,
  /** Longest refresh a timer can wait: setTimeout fires at once beyond 2^31-1 ms (~24.8 d). */
  listRefreshMaxMs: 24 * 24 * 60 * 60 * 1000,
  listMaxEntries: 5_000_000,
  /** Parallel list downloads at once, so a long list of URLs does not open every socket together. */
  listFetchConcurrency: 4,

  /** How many entries the snapshot builder inserts before yielding to the event loop. */
  snapshotBuildSliceEntries: 4_096,

  /** Longest name accepted anywhere (RFC 1035: 255 octets on the wire, 253 in text). */
  nameMaxLength: 253,
  labelMaxLength: 63,
});

export type Defaults = typeof DEFAULTS;

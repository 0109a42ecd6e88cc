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

  /** Admin API: request body cap, time for a whole request, connections, failed-auth limit. */
  adminBodyMaxBytes: 64 * 1024,
  adminRequestTimeoutMs: 10_000,
  adminMaxConnections: 256,
  adminAuthFailuresPerMinute: 10,
  adminAuthFailureMaxClients: 10_000,
  /** Recent block decisions kept for GET /v1/decisions, and audit entries kept in memory. */
  adminDecisionsKept: 1_000,
  adminAuditKept: 1_000,
  /** How often the console's activity view samples the running totals (kept for an hour). */
  activitySampleMs: 10_000,
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
  /** A local list file edited: reload this long after the last change event (editors write in steps). */
  listWatchDebounceMs: 200,

  /** Signed catalog bundles (policy.catalog): refresh bounds, download cap and deadline, retry after a failed download. */
  catalogRefreshDefaultMs: 60 * 60 * 1000,
  catalogRefreshMinMs: 5_000,
  catalogFetchMaxBytes: 16 * 1024 * 1024,
  catalogFetchTimeoutMs: 30_000,
  catalogRetryMaxMs: 5 * 60 * 1000,

  /** How many entries the snapshot builder inserts before yielding to the event loop. */
  snapshotBuildSliceEntries: 4_096,

  /** DNS answer cache: entries and bytes, TTL bounds (RFC 2308 negative caching, RFC 8767 serve-stale). */
  cacheMaxEntries: 100_000,
  cacheMaxBytes: 64 * 1024 * 1024,
  cacheMaxTtlSec: 86_400,
  cacheMinTtlSec: 0,
  cacheNegativeMaxTtlSec: 3_600,
  cacheStaleMaxSec: 86_400,
  cacheStaleAnswerTtlSec: 30,

  /** DNS listener defaults (dns.* config keys). */
  dnsBlockMode: 'nxdomain',
  dnsNegativeTtlSec: 60,
  dnsRateLimitPerSec: 200,
  dnsRateLimitBurst: 400,
  dnsRateLimitMaxClients: 100_000,
  /** RFC 7766 6.2.3: idle TCP connections closed after this long. */
  dnsTcpIdleTimeoutMs: 10_000,
  dnsTcpMaxConnections: 1_000,
  dnsTcpMaxPipelined: 100,
  dnsDohPath: '/dns-query',

  /** TLS/HTTP proxy (proxy.* config keys). */
  proxyBlockAction: 'alert',
  proxyMaxConnections: 10_000,
  proxyMaxConnectionsPerClient: 256,
  /** Whole ClientHello (or HTTP request head) must arrive within this time. */
  clientHelloTimeoutMs: 10_000,
  /** Largest ClientHello read (records included); post-quantum hellos are ~2 KB, 16 KB is the floor. */
  clientHelloMaxBytes: 65_536,
  httpMaxHeadBytes: 16_384,
  proxyIdleTimeoutMs: 300_000,
  /**
   * Once one direction of a proxied connection has ended (FIN), or a refused client has been
   * answered, the rest must be over within this much quiet (HAProxy's client-fin/server-fin):
   * a peer that never closes its side cannot hold a slot for the whole idle timeout.
   */
  proxyHalfClosedTimeoutMs: 15_000,
  /** Largest response head the HTTP proxy reads to find where a response ends. */
  httpMaxResponseHeadBytes: 65_536,
  /** nftables table the IP layer is exported to (nftables.table). */
  nftablesTable: 'portcullis',
  /** Transparent listeners (proxy.transparent.*). */
  transparentMode: 'redirect',
  /**
   * Clients of TLS and HTTP send first, at once; a protocol where the server speaks first
   * (SMTP, FTP) shows no bytes, and after this wait is decided on address and port alone.
   */
  transparentFirstDataTimeoutMs: 1_000,
  /** QUIC flows: forgotten after this long without a datagram either way (Chrome's idle is 30 s). */
  quicIdleTimeoutMs: 30_000,
  quicMaxFlows: 20_000,
  /** Datagrams and bytes a new QUIC flow may hold while its ClientHello is incomplete. */
  quicPendingDatagrams: 8,
  quicPendingBytes: 16_384,
  /** How long SIGTERM waits for open proxy connections before closing them. */
  proxyDrainTimeoutMs: 10_000,
  /** Upstream TCP connect (SYN to established) for a proxied connection; PCL_ERR_DIAL_FAILED after it. */
  dialConnectTimeoutMs: 5_000,

  /** Longest name accepted anywhere (RFC 1035: 255 octets on the wire, 253 in text). */
  nameMaxLength: 253,
  labelMaxLength: 63,

  /** Upstream pool (dns/upstream.ts). Exchanges with upstreams in flight at once; beyond it a query fails at once. */
  dnsMaxInflight: 10_000,
  /** Callers sharing one in-flight question (dedup); beyond it a caller fails at once. */
  dnsMaxWaitersPerQuestion: 1_000,
  /** One UDP attempt waits this long before the question goes to another upstream. */
  upstreamTimeoutMs: 1_000,
  /** Whole question, all attempts: the resolver can still answer SERVFAIL within 2 s. */
  upstreamDeadlineMs: 1_500,
  /** Upstream attempts per question (probes of a down upstream not counted). */
  upstreamMaxAttempts: 3,
  /** Consecutive failures that mark an upstream down (CoreDNS forward's max_fails). */
  upstreamMaxFails: 3,
  /** Long-lived UDP sockets (each its own random source port) per upstream. */
  upstreamSocketsPerUpstream: 4,
  /** EDNS UDP payload size we advertise upstream (DNS flag day 2020). */
  upstreamEdnsUdpSize: 1_232,
  /** TCP retry after TC=1: time to connect, and time for the whole exchange. */
  upstreamTcpConnectTimeoutMs: 1_000,
  upstreamTcpTimeoutMs: 1_500,
  /** Largest response read over TCP (the 2-byte length prefix allows no more). */
  upstreamTcpMaxMessageBytes: 65_535,
  /** DoT/DoH upstreams: TCP connect plus TLS handshake; a connection not ready by then is given up (the deadline of the queries waiting on it). */
  upstreamTlsHandshakeTimeoutMs: 1_500,
  /** DoT/DoH upstreams: a connection with nothing in flight this long is closed (unbound's own idle timeout is 30 s). */
  upstreamTlsIdleTimeoutMs: 25_000,
  /** Queries over DoT/DoH are padded to a multiple of this (EDNS padding, RFC 8467's block length). */
  upstreamPaddingBlockBytes: 128,
});

export type Defaults = typeof DEFAULTS;

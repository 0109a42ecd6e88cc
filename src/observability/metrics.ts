import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './hot-metrics.js';
import { APP_IDS } from '../catalog/index.js';
import { UPDATE_RESULTS, type CatalogStatus, type UpdateResult } from '../catalog/updater.js';
import type { BlockEvent, PolicyEngine, SwapEvent } from '../policy/index.js';
import { PROXY_LISTENERS, PROXY_RESULTS } from '../proxy/events.js';

/**
 * Every metric portcullis exports, on one registry. Labels come from closed sets (app, layer,
 * result, protocol, listener, configured upstreams): never a name or a client address. Hot-path
 * hooks increment children resolved once at start, so counting allocates nothing.
 */

export const DNS_PROTOCOLS = ['udp', 'tcp', 'dot', 'doh'] as const;
export const DNS_RESULTS = ['allowed', 'blocked', 'cached', 'servfail', 'refused', 'formerr', 'dropped'] as const;
export const LAYERS = ['dns', 'tls', 'http', 'ip', 'quic', 'protocol'] as const;
export const UPSTREAM_ERROR_KINDS = ['timeout', 'network', 'tls', 'malformed', 'mismatch', 'truncated', 'overloaded', 'closed'] as const;
const APPS_AND_CUSTOM = [...APP_IDS, 'custom'] as const;

/** A counter child that exists from the start at 0, so queries over it are never empty. */
function declared<L extends string>(counter: Counter<L>, labels: Record<L, string>): Counter.Internal {
  counter.inc(labels, 0);
  return counter.labels(labels);
}

function declaredHistogram<L extends string>(histogram: Histogram<L>, labels: Record<L, string>): Histogram.Internal<L> {
  histogram.zero(labels);
  return histogram.labels(labels);
}

function indexOf<K extends string>(values: readonly K[]): Record<K, number> {
  return Object.fromEntries(values.map((v, i) => [v, i])) as Record<K, number>;
}
const DNS_PROTOCOL_INDEX = indexOf(DNS_PROTOCOLS);
const DNS_RESULT_INDEX = indexOf(DNS_RESULTS);
const APP_INDEX = indexOf(APPS_AND_CUSTOM);
const LAYER_INDEX = indexOf(LAYERS);
const PROXY_LISTENER_INDEX = indexOf(PROXY_LISTENERS);
const PROXY_RESULT_INDEX = indexOf(PROXY_RESULTS);

type DnsProtocol = (typeof DNS_PROTOCOLS)[number];
type DnsResultLabel = (typeof DNS_RESULTS)[number];
type ProxyListener = (typeof PROXY_LISTENERS)[number];
type ProxyResultLabel = (typeof PROXY_RESULTS)[number];

/** DNS latency buckets from 0.25 ms: a cache hit answers in well under a millisecond. */
export const DNS_DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const UPSTREAM_DURATION_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2];
const BUILD_DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10];

/** What the gauges read when Prometheus scrapes; attached once the parts exist. */
export interface MetricSources {
  engine: PolicyEngine;
  cache(): { entries: number; bytes: number; maxEntries: number; maxBytes: number };
  upstreams(): readonly { upstream: string; healthy: boolean }[];
  proxyActive(): Record<ProxyListener, number>;
  storeHealthy(): boolean;
  catalog(): CatalogStatus;
}

export interface Metrics {
  readonly registry: Registry;
  attach(sources: MetricSources): void;
  /** `startedMs` is performance.now() when the query was read. */
  dnsResult(result: DnsResultLabel, protocol: DnsProtocol, startedMs: number): void;
  /** What a DNS worker thread counted since its last report (dns/worker.ts). */
  dnsWorkerReport(worker: number, report: DnsWorkerReport): void;
  blocked(block: BlockEvent): void;
  proxyResult(listener: ProxyListener, result: ProxyResultLabel): void;
  proxyClosed(listener: ProxyListener, bytesFromClient: number, bytesToClient: number): void;
  upstreamResult(upstream: string, outcome: 'ok' | (typeof UPSTREAM_ERROR_KINDS)[number], rttMs: number | null): void;
  policySwap(event: SwapEvent): void;
  reload(kind: 'config' | 'list' | 'nftables', isSuccess: boolean): void;
  /** One look at a catalog bundle (download or fleet), by outcome. */
  catalogUpdate(result: UpdateResult): void;
  authFailure(): void;
  /** Running totals since start, for the console's activity view. */
  totals(): ActivityTotals;
}

export interface ActivityTotals {
  queries: number;
  blocks: number;
  blocksByApp: Record<(typeof APPS_AND_CUSTOM)[number], number>;
}

/** The queries and latencies one DNS worker thread counted, indexed as the main thread's. */
export interface DnsWorkerReport {
  /** Per (protocol, result): dnsQueryIndex(). */
  queries: Float64Array;
  durations: { counts: Float64Array; sum: number };
}

/** Where a (protocol, result) pair counts in portcullis_dns_queries_total's series. */
export function dnsQueryIndex(result: DnsResultLabel, protocol: DnsProtocol): number {
  return DNS_PROTOCOL_INDEX[protocol] * DNS_RESULTS.length + DNS_RESULT_INDEX[result];
}

export const DNS_QUERY_SERIES = DNS_PROTOCOLS.length * DNS_RESULTS.length;

export function createMetrics(upstreams: readonly string[], options: { dnsWorkers?: number } = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_' });
  // Gauges named *_total break the exposition conventions (promtool check metrics refuses them).
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`portcullis_${name}`);
  const registers = [registry];
  let sources: MetricSources | null = null;

  const dnsQueries = new HotCounter({
    name: 'portcullis_dns_queries_total',
    help: 'DNS queries answered (or dropped), by protocol and result',
    labelNames: ['protocol', 'result'] as const,
    series: DNS_PROTOCOLS.flatMap((protocol) => DNS_RESULTS.map((result) => ({ protocol, result }))),
    registry,
  });
  const dnsDuration = new HotHistogram({ name: 'portcullis_dns_request_duration_seconds', help: 'Time from a DNS query read to its answer sent', buckets: DNS_DURATION_BUCKETS, registry });
  const dnsWorkers = options.dnsWorkers ?? 1;
  const workerQueries = new HotCounter({
    name: 'portcullis_dns_worker_queries_total',
    help: 'DNS queries by the thread that served them (dns.workers; 0 is the main thread)',
    labelNames: ['worker'] as const,
    series: Array.from({ length: dnsWorkers }, (_, i) => ({ worker: String(i) })),
    registry,
  });

  const blockedTotal = new HotCounter({
    name: 'portcullis_blocked_total',
    help: 'Queries and connections blocked, by app and layer (custom: rules without an app)',
    labelNames: ['app', 'layer'] as const,
    series: APPS_AND_CUSTOM.flatMap((app) => LAYERS.map((layer) => ({ app, layer }))),
    registry,
  });

  const proxyConnections = new HotCounter({
    name: 'portcullis_proxy_connections_total',
    help: 'Proxy connections (HTTP: requests), by listener and result',
    labelNames: ['listener', 'result'] as const,
    series: PROXY_LISTENERS.flatMap((listener) => PROXY_RESULTS.map((result) => ({ listener, result }))),
    registry,
  });
  const proxyBytes = new Counter({ name: 'portcullis_proxy_bytes_total', help: 'Bytes relayed by the proxy, by listener and direction (counted when a connection closes)', labelNames: ['listener', 'direction'] as const, registers });
  const proxyBytesBy = Object.fromEntries(
    PROXY_LISTENERS.map((listener) => [listener, { fromClient: declared(proxyBytes, { listener, direction: 'from_client' }), toClient: declared(proxyBytes, { listener, direction: 'to_client' }) }]),
  ) as Record<ProxyListener, { fromClient: Counter.Internal; toClient: Counter.Internal }>;
  new Gauge({
    name: 'portcullis_proxy_active_connections',
    help: 'Proxy connections open now, by listener',
    labelNames: ['listener'] as const,
    registers,
    collect() {
      const active = sources?.proxyActive();
      for (const listener of PROXY_LISTENERS) this.set({ listener }, active?.[listener] ?? 0);
    },
  });

  const upstreamErrors = new Counter({ name: 'portcullis_upstream_errors_total', help: 'Failed upstream DNS attempts, by upstream and kind', labelNames: ['upstream', 'kind'] as const, registers });
  const upstreamDuration = new Histogram({ name: 'portcullis_upstream_request_duration_seconds', help: 'Round trip of answered upstream DNS attempts, by upstream', labelNames: ['upstream'] as const, buckets: UPSTREAM_DURATION_BUCKETS, registers });
  const upstreamChildren = new Map(
    upstreams.map((upstream) => [
      upstream,
      {
        duration: declaredHistogram(upstreamDuration, { upstream }),
        errors: Object.fromEntries(UPSTREAM_ERROR_KINDS.map((kind) => [kind, declared(upstreamErrors, { upstream, kind })])) as Record<(typeof UPSTREAM_ERROR_KINDS)[number], Counter.Internal>,
      },
    ]),
  );
  new Gauge({
    name: 'portcullis_upstream_up',
    help: 'Whether the upstream DNS server is considered healthy (1) or down (0)',
    labelNames: ['upstream'] as const,
    registers,
    collect() {
      for (const u of sources?.upstreams() ?? upstreams.map((upstream) => ({ upstream, healthy: true }))) this.set({ upstream: u.upstream }, u.healthy ? 1 : 0);
    },
  });

  const cacheGauge = (name: string, help: string, read: (c: ReturnType<MetricSources['cache']>) => number): Gauge =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(sources === null ? 0 : read(sources.cache()));
      },
    });
  cacheGauge('portcullis_dns_cache_entries', 'Answers in the DNS cache', (c) => c.entries);
  cacheGauge('portcullis_dns_cache_bytes', 'Bytes of answers in the DNS cache', (c) => c.bytes);
  cacheGauge('portcullis_dns_cache_max_entries', 'DNS cache capacity in entries (dns.cache.maxEntries)', (c) => c.maxEntries);
  cacheGauge('portcullis_dns_cache_max_bytes', 'DNS cache capacity in bytes (dns.cache.maxBytes)', (c) => c.maxBytes);

  new Gauge({
    name: 'portcullis_policy_version',
    help: 'Version of the policy snapshot in force',
    registers,
    collect() {
      this.set(sources?.engine.version ?? 0);
    },
  });
  new Gauge({
    name: 'portcullis_policy_rules',
    help: 'Rule entries in force, by app (custom: admin and list rules without an app)',
    labelNames: ['app'] as const,
    registers,
    collect() {
      if (sources === null) return;
      const counts = sources.engine.current.ruleCounts();
      for (const app of APPS_AND_CUSTOM) {
        const c = counts.get(app);
        this.set({ app }, c === undefined ? 0 : c.domains + c.cidrs + c.ports + c.protocols);
      }
    },
  });
  new Gauge({
    name: 'portcullis_app_enabled',
    help: 'Whether the app is blocked (1) or switched off (0)',
    labelNames: ['app'] as const,
    registers,
    collect() {
      if (sources === null) return;
      for (const app of APP_IDS) this.set({ app }, sources.engine.current.apps.enabled.has(app) ? 1 : 0);
    },
  });
  const buildDuration = new Histogram({ name: 'portcullis_policy_build_duration_seconds', help: 'Time to build a new policy snapshot, by what changed', labelNames: ['reason'] as const, buckets: BUILD_DURATION_BUCKETS, registers });
  const buildBy = { apps: declaredHistogram(buildDuration, { reason: 'apps' }), rules: declaredHistogram(buildDuration, { reason: 'rules' }), lists: declaredHistogram(buildDuration, { reason: 'lists' }), catalog: declaredHistogram(buildDuration, { reason: 'catalog' }) };
  const reloads = new Counter({ name: 'portcullis_reloads_total', help: 'Configuration reloads (SIGHUP), list loads and nftables exports, by kind and result', labelNames: ['kind', 'result'] as const, registers });
  for (const kind of ['config', 'list', 'nftables']) for (const result of ['success', 'failure']) declared(reloads, { kind, result });
  new Gauge({
    name: 'portcullis_store_up',
    help: 'Whether the policy store (file or Redis) is reachable and writable (1) or not (0)',
    registers,
    collect() {
      this.set(sources === null || sources.storeHealthy() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'portcullis_catalog_version',
    help: 'Version of the app catalog in force (bundled, or a verified signed bundle)',
    registers,
    collect() {
      if (sources !== null) this.set(sources.catalog().version);
    },
  });
  new Gauge({
    name: 'portcullis_catalog_expiry_timestamp_seconds',
    help: 'When the signed catalog bundle in force expires (Unix time); 0 for the bundled catalog',
    registers,
    collect() {
      const expires = sources?.catalog().expires ?? null;
      this.set(expires === null ? 0 : Date.parse(expires) / 1000);
    },
  });
  const catalogUpdates = new Counter({ name: 'portcullis_catalog_updates_total', help: 'Signed catalog bundles looked at (downloaded or shared by the fleet), by result: applied, unchanged, or why refused', labelNames: ['result'] as const, registers });
  for (const result of UPDATE_RESULTS) declared(catalogUpdates, { result });
  const authFailures = new Counter({ name: 'portcullis_admin_auth_failures_total', help: 'Admin API requests refused for a missing or wrong token', registers });

  return {
    registry,
    attach(attached) {
      sources = attached;
    },
    dnsResult(result, protocol, startedMs) {
      dnsQueries.inc(dnsQueryIndex(result, protocol));
      workerQueries.inc(0);
      if (result !== 'dropped') dnsDuration.observe((performance.now() - startedMs) / 1000);
    },
    dnsWorkerReport(worker, report) {
      let total = 0;
      report.queries.forEach((n, i) => {
        if (n > 0) dnsQueries.inc(i, n);
        total += n;
      });
      if (worker < dnsWorkers && total > 0) workerQueries.inc(worker, total);
      dnsDuration.merge(report.durations);
    },
    blocked(block) {
      blockedTotal.inc(APP_INDEX[block.app ?? 'custom'] * LAYERS.length + LAYER_INDEX[block.layer]);
    },
    proxyResult(listener, result) {
      proxyConnections.inc(PROXY_LISTENER_INDEX[listener] * PROXY_RESULTS.length + PROXY_RESULT_INDEX[result]);
    },
    proxyClosed(listener, fromClient, toClient) {
      proxyBytesBy[listener].fromClient.inc(fromClient);
      proxyBytesBy[listener].toClient.inc(toClient);
    },
    upstreamResult(upstream, outcome, rttMs) {
      const children = upstreamChildren.get(upstream);
      if (children === undefined) return;
      if (outcome === 'ok') {
        if (rttMs !== null) children.duration.observe(rttMs / 1000);
      } else children.errors[outcome].inc();
    },
    policySwap(event) {
      buildBy[event.reason].observe(event.buildMs / 1000);
    },
    reload(kind, isSuccess) {
      reloads.inc({ kind, result: isSuccess ? 'success' : 'failure' });
    },
    catalogUpdate(result) {
      catalogUpdates.inc({ result });
    },
    authFailure() {
      authFailures.inc();
    },
    totals() {
      const blocksByApp = Object.fromEntries(
        APPS_AND_CUSTOM.map((app, a) => [app, blockedTotal.total((series) => Math.floor(series / LAYERS.length) === a)]),
      ) as ActivityTotals['blocksByApp'];
      return { queries: dnsQueries.total(), blocks: blockedTotal.total(), blocksByApp };
    },
  };
}

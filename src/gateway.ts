import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadBundledRelease } from './catalog/index.js';
import { CatalogUpdater, readCatalogUpdates, type CatalogShare, type UpdateResult } from './catalog/updater.js';
import { DEFAULTS, SEED_KEYS, changedKeys, parseListenAddress, reloadedKeys, restartKeys, type Config } from './config/index.js';
import {
  ActivitySampler,
  AuditLog,
  DecisionLog,
  PolicyControl,
  buildAdmin,
  enabledApps,
  initialState,
  loadTokens,
  openStore,
  readStoredState,
  type PolicyStore,
  type TokenVerifier,
} from './control/index.js';
import { DnsServer, createAddressResolver, type DnsAddresses } from './dns/index.js';
import { DnsWorkerPool } from './dns/workers.js';
import { ProxyServer, type ProxyAddresses } from './proxy/index.js';
import { ListManager } from './lists/index.js';
import type { Logger } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { PolicyEngine, type AppState, type BlockEvent } from './policy/index.js';
import { NftFileSync } from './policy/nft-file.js';

export function appStateFrom(config: Config): AppState {
  return { enabled: new Set(config.policy.apps), extended: new Set(config.policy.extended) };
}

export interface Policy {
  /** The catalog in force (bundled or a verified bundle) and its updates. */
  catalog: CatalogUpdater;
  engine: PolicyEngine;
  lists: ListManager;
}

export interface PolicyLoadOptions {
  offline?: boolean;
  onListLoad?: (isSuccess: boolean) => void;
  onCatalogUpdate?: (result: UpdateResult) => void;
  catalogShare?: CatalogShare | null;
}

/**
 * Loads the catalog in force (the bundled one, or the verified bundle kept under store.path
 * when newer), builds the engine and loads the extra lists. `offline` (for check and apps)
 * reads remote lists from their last downloaded copy only, and applies the stored policy state
 * (app switches and admin rules) without opening the store.
 */
export async function loadPolicy(config: Config, logger: Logger, options: PolicyLoadOptions = {}): Promise<Policy> {
  const catalog = new CatalogUpdater({
    bundled: await loadBundledRelease(),
    updates: config.policy.catalog === null ? null : await readCatalogUpdates(config.policy.catalog),
    dir: config.store.path,
    logger,
    share: options.catalogShare ?? null,
    onResult: options.onCatalogUpdate,
  });
  await catalog.loadStored();
  const engine = new PolicyEngine({ catalog: catalog.release.catalog, categories: catalog.release.categories, apps: appStateFrom(config) });
  catalog.on('release', (release) => engine.setCatalog(release.catalog, release.categories));
  if (options.offline === true) {
    const stored = await readStoredState(config);
    if (stored !== null) {
      engine.setApps({ enabled: new Set(enabledApps(stored)), extended: new Set(config.policy.extended) });
      engine.setAdminRules(stored.rules);
    }
  }
  const lists = await loadLists(config, engine, logger, options.offline ?? false, options.onListLoad);
  return { catalog, engine, lists };
}

/** The extra lists of `config`, loaded, in force in `engine`, and feeding it their refreshes. */
async function loadLists(config: Config, engine: PolicyEngine, logger: Logger, offline: boolean, onLoad?: (isSuccess: boolean) => void): Promise<ListManager> {
  const lists = new ListManager(config.policy.lists, { cacheDir: join(config.store.path, 'lists'), logger, offline, onLoad });
  lists.on('update', (entries) => {
    void engine.setLists(entries);
  });
  await lists.loadAll();
  await engine.setLists(lists.entries());
  return lists;
}

export interface Gateway extends Policy {
  dns: DnsServer;
  dnsAddresses: DnsAddresses;
  proxy: ProxyServer;
  proxyAddresses: ProxyAddresses;
  admin: FastifyInstance;
  adminAddress: { address: string; port: number };
  control: PolicyControl;
  store: PolicyStore;
  metrics: Metrics;
  /**
   * SIGHUP: puts in force what can change without a restart (admin tokens, `policy.extended`,
   * every list, `log.level`) and says what else changed and waits for a restart.
   */
  reload(config: Config): Promise<ReloadSummary>;
  /** Keys changed in the configuration since start that only a restart puts in force. */
  readonly restartPending: readonly string[];
  close(): Promise<void>;
}

export interface ReloadSummary {
  /** Keys changed since the last load, now in force. */
  applied: string[];
  /** Keys that differ from the running configuration and need a restart. */
  restartPending: string[];
  /** Keys that only seed a new store (the API owns them now), changed since the last load. */
  seedOnly: string[];
}

export interface StartOptions {
  /** `start --recover`: a corrupt policy store starts from its last good copy. */
  isRecovering?: boolean;
}

/**
 * Everything `portcullis start` runs: the policy (catalog, lists, and the stored state the
 * admin API changes), DNS and proxy listeners, and the admin API with /metrics.
 */
export async function startGateway(config: Config, logger: Logger, options: StartOptions = {}): Promise<Gateway> {
  let tokens = await loadTokens(config.admin.tokens);
  let loaded = config;
  let restartPending: string[] = [];
  // SIGHUP swaps the token set (rotation) under the running API.
  const currentTokens: TokenVerifier = {
    get isConfigured() {
      return tokens.isConfigured;
    },
    verify: (authorization) => tokens.verify(authorization),
  };
  const metrics = createMetrics(config.dns.upstreams, { dnsWorkers: config.dns.workers });
  const onListLoad = (isSuccess: boolean): void => metrics.reload('list', isSuccess);
  const store = openStore(config, logger, options);
  let policy = await loadPolicy(config, logger, { onListLoad, onCatalogUpdate: (result) => metrics.catalogUpdate(result), catalogShare: store.catalogShare });
  const { engine } = policy;
  engine.on('swap', (event) => {
    logger.info({ component: 'policy', ...event }, 'policy swapped');
    metrics.policySwap(event);
  });
  const audit = new AuditLog(config.store.path, logger, DEFAULTS.adminAuditKept);
  const control = new PolicyControl({ store, engine, audit, logger, extended: new Set(config.policy.extended) });
  // What has started is closed again, in reverse, when a later step fails (a port in use, a
  // corrupt store): a failed start must exit, not linger with half its listeners bound.
  const started: (() => Promise<void>)[] = [() => store.close(), () => audit.close()];
  const step = async <T>(run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (e: unknown) {
      for (const close of started.reverse()) await close().catch(() => undefined);
      throw e;
    }
  };
  await step(() => control.start(initialState(config.policy.apps)));
  await step(() => audit.open());
  policy.lists.start();
  started.push(() => {
    policy.lists.stop();
    return Promise.resolve();
  });
  // After the store: a fleet's shared bundle is read through it.
  policy.catalog.start();
  started.push(() => policy.catalog.stop());
  let nft: NftFileSync | null = null;
  if (config.nftables !== null) {
    const sync = new NftFileSync(engine, { ...config.nftables, logger, onWritten: (isSuccess) => metrics.reload('nftables', isSuccess) });
    await step(() => sync.start());
    started.push(() => sync.stop());
    nft = sync;
  }

  const decisions = new DecisionLog(config.admin.decisions.kept, config.admin.decisions.clientAddresses, config.admin.decisions.names);
  const onBlocked = (block: BlockEvent): void => {
    decisions.record(block);
    metrics.blocked(block);
  };
  let isListening = false;
  let dnsWorkers: DnsWorkerPool | null = null;
  const dns = await step(() => DnsServer.create({
    config: config.dns,
    policy: engine,
    logger,
    onBlocked,
    onResult: (result, transport, startedMs) => metrics.dnsResult(result, transport, startedMs),
    onUpstreamResult: (r) => metrics.upstreamResult(r.upstream, r.outcome, r.rttMs),
    reusePort: config.dns.workers > 1,
  }));
  started.push(() => dns.close());
  const dnsAddresses = await step(() => dns.listen());
  if (config.dns.workers > 1) {
    if (dns.udpIo === 'batch') {
      const { address, port } = dnsAddresses.udp;
      const pool = new DnsWorkerPool({
        extra: config.dns.workers - 1,
        dns: { ...config.dns, listen: address.includes(':') ? `[${address}]:${port}` : `${address}:${port}` },
        engine,
        catalog: () => policy.catalog.release,
        logLevel: config.log.level,
        logger,
        onReport: (worker, report) => metrics.dnsWorkerReport(worker, report),
        onBlocked,
      });
      await step(() => pool.start());
      started.push(() => pool.close());
      dnsWorkers = pool;
    } else {
      logger.warn({ component: 'dns', workers: config.dns.workers }, 'dns.workers needs the native batch socket (dns.udpBatching and the addon): one thread serves');
    }
  }
  const proxy = new ProxyServer({
    config: config.proxy,
    policy: engine,
    resolver: createAddressResolver(dns.upstream, dns.cache),
    appNames: new Map([...engine.catalog].map(([id, app]) => [id, app.name])),
    logger,
    onBlocked,
    onResult: (listener, result) => metrics.proxyResult(listener, result),
    onClosed: (listener, fromClient, toClient) => metrics.proxyClosed(listener, fromClient, toClient),
  });
  started.push(() => proxy.close());
  const proxyAddresses = await step(() => proxy.listen());
  // A policy change reaches open connections too: each is decided again, those now blocked cut.
  engine.on('swap', () => proxy.recheck());
  metrics.attach({
    engine,
    cache: () => ({ entries: dns.cache.size, bytes: dns.cache.bytes, maxEntries: config.dns.cache.maxEntries, maxBytes: config.dns.cache.maxBytes }),
    upstreams: () => dns.upstream.health(),
    proxyActive: () => proxy.activeConnections,
    storeHealthy: () => store.health().isHealthy,
    catalog: () => policy.catalog.status(),
  });
  const activity = new ActivitySampler(() => metrics.totals(), DEFAULTS.activitySampleMs);
  activity.start();
  started.push(() => {
    activity.stop();
    return Promise.resolve();
  });
  const admin = await step(() => buildAdmin({
    catalog: policy.catalog,
    engine,
    control,
    tokens: currentTokens,
    audit,
    decisions,
    metrics,
    logger,
    storeHealth: () => store.health(),
    listenersReady: () => isListening,
    restartPending: () => restartPending,
    refreshLists: () => policy.lists.refresh(),
    explain: (name) => dns.explain(name),
    activity,
    storeKind: store.kind,
  }));
  started.push(() => admin.close());
  const adminListen = parseListenAddress(config.admin.listen, 'admin.listen');
  await step(() => admin.listen({ host: adminListen.host, port: adminListen.port }));
  admin.server.maxConnections = DEFAULTS.adminMaxConnections;
  const adminInfo = admin.server.address() as AddressInfo;
  logger.info({ component: 'admin', address: adminInfo.address, port: adminInfo.port, tokens: config.admin.tokens.length }, 'admin API listening');
  isListening = true;

  return {
    dns,
    dnsAddresses,
    proxy,
    proxyAddresses,
    admin,
    adminAddress: { address: adminInfo.address, port: adminInfo.port },
    control,
    store,
    metrics,
    get catalog() {
      return policy.catalog;
    },
    get engine() {
      return policy.engine;
    },
    get lists() {
      return policy.lists;
    },
    get restartPending() {
      return restartPending;
    },
    async reload(next: Config) {
      const sinceLast = changedKeys(loaded, next);
      tokens = await loadTokens(next.admin.tokens);
      control.setExtended(new Set(next.policy.extended));
      logger.level = next.log.level;
      policy.lists.stop();
      const lists = await loadLists(next, engine, logger, false, onListLoad);
      policy = { ...policy, lists };
      lists.start();
      loaded = next;
      // Against the configuration the process started with: reverting a change clears it.
      restartPending = restartKeys(changedKeys(config, next));
      return { applied: reloadedKeys(sinceLast), restartPending, seedOnly: sinceLast.filter((key) => SEED_KEYS.some((seed) => key === seed || key.startsWith(`${seed}.`))) };
    },
    async close() {
      isListening = false;
      activity.stop();
      policy.lists.stop();
      await policy.catalog.stop();
      await nft?.stop();
      await admin.close();
      await proxy.close();
      await dnsWorkers?.close();
      await dns.close();
      await store.close();
      await audit.close();
    },
  };
}

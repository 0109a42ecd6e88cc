import { join } from 'node:path';
import { loadCatalog, type Catalog } from './catalog/index.js';
import type { Config } from './config/index.js';
import { DnsServer, createAddressResolver, type DnsAddresses } from './dns/index.js';
import { ProxyServer, type ProxyAddresses } from './proxy/index.js';
import { ListManager } from './lists/index.js';
import type { Logger } from './observability/logger.js';
import { PolicyEngine, type AppState } from './policy/index.js';

export function appStateFrom(config: Config): AppState {
  return { enabled: new Set(config.policy.apps), extended: new Set(config.policy.extended) };
}

export interface Policy {
  catalog: Catalog;
  engine: PolicyEngine;
  lists: ListManager;
}

/**
 * Loads the catalog, builds the engine and loads the extra lists. `offline` (for check and
 * validate) reads remote lists from their last downloaded copy only.
 */
export async function loadPolicy(config: Config, logger: Logger, options: { offline?: boolean } = {}): Promise<Policy> {
  const catalog = await loadCatalog();
  const engine = new PolicyEngine({ catalog, apps: appStateFrom(config) });
  const lists = await loadLists(config, engine, logger, options.offline ?? false);
  return { catalog, engine, lists };
}

/** The extra lists of `config`, loaded, in force in `engine`, and feeding it their refreshes. */
async function loadLists(config: Config, engine: PolicyEngine, logger: Logger, offline: boolean): Promise<ListManager> {
  const lists = new ListManager(config.policy.lists, { cacheDir: join(config.store.path, 'lists'), logger, offline });
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
  /** Re-reads what SIGHUP reloads: app state from config, and every list. */
  reload(config: Config): Promise<void>;
  close(): Promise<void>;
}

/** Everything `portcullis start` runs. Listeners (DNS, proxy, admin) attach here. */
export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  let policy = await loadPolicy(config, logger);
  policy.lists.start();
  const dns = await DnsServer.create({ config: config.dns, policy: policy.engine, logger });
  const dnsAddresses = await dns.listen();
  const proxy = new ProxyServer({ config: config.proxy, policy: policy.engine, resolver: createAddressResolver(dns.upstream), logger });
  const proxyAddresses = await proxy.listen();
  policy.engine.on('swap', (event) => {
    logger.info({ component: 'policy', ...event }, 'policy swapped');
  });
  const gateway: Gateway = {
    dns,
    dnsAddresses,
    proxy,
    proxyAddresses,
    get catalog() {
      return policy.catalog;
    },
    get engine() {
      return policy.engine;
    },
    get lists() {
      return policy.lists;
    },
    async reload(next: Config) {
      policy.engine.setApps(appStateFrom(next));
      policy.lists.stop();
      const lists = await loadLists(next, policy.engine, logger, false);
      policy = { ...policy, lists };
      lists.start();
    },
    async close() {
      policy.lists.stop();
      await proxy.close();
      await dns.close();
    },
  };
  return gateway;
}

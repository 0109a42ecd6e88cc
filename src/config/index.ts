export { parseHostPort, parseListenAddress, isLoopbackHost, type HostPort } from './address.js';
export { DEFAULTS } from './defaults.js';
export { CONFIG_KEYS, DEFAULT_CONFIG_FILE, loadConfig, loadConfigChecked, parseDurationMs, type LoadOptions, type LoadResult } from './load.js';
export type { CatalogUpdateConfig, Config, DnsConfig, ListConfig, ProxyConfig, TokenConfig } from './schema.js';
export type { Problem } from './yaml-source.js';
export { RELOADABLE_KEYS, SEED_KEYS, changedKeys, reloadedKeys, restartKeys } from './diff.js';

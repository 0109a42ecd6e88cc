export { APP_IDS, PROTOCOL_IDS, isAppId, type AppId, type ProtocolId, type Tier } from './apps.js';
export {
  DEFAULT_CATALOG_DIR,
  loadCatalog,
  loadCatalogChecked,
  type Catalog,
  type CatalogApp,
  type CatalogCidr,
  type CatalogDomain,
  type CatalogPort,
  type CatalogProtocol,
} from './load.js';
export { loadCategory, type Category } from './category.js';

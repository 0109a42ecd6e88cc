export { APP_IDS, isAppId, type AppId, type Tier } from './apps.js';
export {
  DEFAULT_CATALOG_DIR,
  loadCatalog,
  loadCatalogChecked,
  type Catalog,
  type CatalogApp,
  type CatalogCidr,
  type CatalogDomain,
  type CatalogPort,
} from './load.js';
export { loadCategory, type Category } from './category.js';

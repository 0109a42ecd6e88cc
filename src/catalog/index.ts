export { APP_IDS, PROTOCOL_IDS, isAppId, type AppId, type ProtocolId, type Tier } from './apps.js';
export {
  DEFAULT_CATALOG_DIR,
  catalogInvalid,
  compileApps,
  loadCatalog,
  loadCatalogChecked,
  type Catalog,
  type CatalogApp,
  type CatalogCidr,
  type CatalogDocument,
  type CatalogDomain,
  type CatalogPort,
  type CatalogProtocol,
} from './load.js';
export { CATEGORY_IDS, compileCategory, type Category, type CategoryId } from './category.js';
export { compileRelease, loadBundledRelease, loadBundledReleaseChecked, type CatalogDocuments, type CatalogRelease, type ReleaseMeta } from './release.js';

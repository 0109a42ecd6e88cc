import type { CatalogApp } from '../catalog/index.js';
import type { PolicySnapshot, RuleCounts } from '../policy/index.js';

/** One app as `portcullis apps` and the admin API show it. */
export interface AppView {
  id: string;
  name: string;
  enabled: boolean;
  extended: boolean;
  coverage: CatalogApp['coverage'];
  coverageNote: string | null;
  /** Entries in force now (0 while the app is off). */
  rules: RuleCounts;
  /** Entries the catalog has for the app. */
  catalog: RuleCounts;
}

export function appViews(apps: Iterable<CatalogApp>, snapshot: PolicySnapshot): AppView[] {
  const counts = snapshot.ruleCounts();
  return [...apps].map((app) => ({
    id: app.id,
    name: app.name,
    enabled: snapshot.apps.enabled.has(app.id),
    extended: snapshot.apps.extended.has(app.id),
    coverage: app.coverage,
    coverageNote: app.coverageNote,
    rules: counts.get(app.id) ?? { domains: 0, cidrs: 0, ports: 0, protocols: 0 },
    catalog: { domains: app.domains.length, cidrs: app.cidrs.length, ports: app.ports.length, protocols: app.protocols.length },
  }));
}


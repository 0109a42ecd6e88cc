import { EventEmitter } from 'node:events';
import type { AppId, Catalog, Category, CategoryId } from '../catalog/index.js';
import { SuffixNameSet } from '../match/name-set.js';
import type { AdminRule } from './admin-rule.js';
import { compileLists, compileOverlay, type ListEntries } from './compile.js';
import { EMPTY_INDEX } from './rule-index.js';
import { PolicySnapshot, type AppState, type Decision, type DecisionQuery } from './snapshot.js';

export interface PolicyEngineOptions {
  catalog: Catalog;
  /** The catalog's categories (doh-bypass); none when absent. */
  categories?: ReadonlyMap<CategoryId, Category>;
  apps: AppState;
  adminRules?: readonly AdminRule[];
}

export interface SwapEvent {
  version: number;
  reason: 'apps' | 'rules' | 'lists' | 'catalog';
  buildMs: number;
}

/**
 * Owns the current PolicySnapshot. Every change builds a new snapshot aside and lands with one
 * reference assignment; `version` moves only on a swap. List rebuilds run one at a time: a
 * trigger during a build is coalesced into one more build with the newest lists.
 */
export class PolicyEngine extends EventEmitter<{ swap: [SwapEvent] }> {
  private catalogInForce: Catalog;
  private dohResolverNames: SuffixNameSet;
  private snapshot: PolicySnapshot;
  private adminRules: readonly AdminRule[];
  private listBuild: Promise<void> | null = null;
  private lists: readonly ListEntries[] = [];
  private pendingLists: readonly ListEntries[] | null = null;

  constructor(options: PolicyEngineOptions) {
    super();
    this.catalogInForce = options.catalog;
    this.dohResolverNames = new SuffixNameSet(options.categories?.get('doh-bypass')?.domains ?? []);
    this.adminRules = options.adminRules ?? [];
    this.snapshot = new PolicySnapshot({
      version: 1,
      overlay: compileOverlay(this.catalog, this.adminRules),
      lists: EMPTY_INDEX,
      apps: options.apps,
    });
  }

  /** The app catalog in force (bundled, or a verified catalog bundle). */
  get catalog(): Catalog {
    return this.catalogInForce;
  }

  /** The doh-bypass category's names in force (enforced when dns.bypass.dohResolvers is on). */
  get dohResolvers(): SuffixNameSet {
    return this.dohResolverNames;
  }

  get current(): PolicySnapshot {
    return this.snapshot;
  }

  get version(): number {
    return this.snapshot.version;
  }

  get rules(): readonly AdminRule[] {
    return this.adminRules;
  }

  /** The extra lists in force (the entries of the last lists build). */
  get listEntries(): readonly ListEntries[] {
    return this.lists;
  }

  decide(query: DecisionQuery): Decision {
    return this.snapshot.decide(query);
  }

  setApps(apps: AppState): void {
    const started = performance.now();
    this.swap(this.snapshot.with(this.snapshot.version + 1, { apps }), 'apps', started);
  }

  setAppEnabled(app: AppId, enabled: boolean): void {
    const next = new Set(this.snapshot.apps.enabled);
    if (enabled) next.add(app);
    else next.delete(app);
    this.setApps({ enabled: next, extended: this.snapshot.apps.extended });
  }

  setAdminRules(rules: readonly AdminRule[]): void {
    const started = performance.now();
    const overlay = compileOverlay(this.catalog, rules);
    this.adminRules = rules;
    this.swap(this.snapshot.with(this.snapshot.version + 1, { overlay }), 'rules', started);
  }

  /** A new catalog replaces the old one whole: its entries, and the categories with it. */
  setCatalog(catalog: Catalog, categories: ReadonlyMap<CategoryId, Category>): void {
    const started = performance.now();
    const overlay = compileOverlay(catalog, this.adminRules);
    this.catalogInForce = catalog;
    this.dohResolverNames = new SuffixNameSet(categories.get('doh-bypass')?.domains ?? []);
    this.swap(this.snapshot.with(this.snapshot.version + 1, { overlay }), 'catalog', started);
  }

  /** Rebuilds the lists index in the background; resolves once the newest lists are in force. */
  setLists(lists: readonly ListEntries[]): Promise<void> {
    this.pendingLists = lists;
    this.listBuild ??= this.buildLists().finally(() => {
      this.listBuild = null;
    });
    return this.listBuild;
  }

  private async buildLists(): Promise<void> {
    while (this.pendingLists !== null) {
      const lists = this.pendingLists;
      this.pendingLists = null;
      const started = performance.now();
      const index = await compileLists(lists);
      this.lists = lists;
      this.swap(this.snapshot.with(this.snapshot.version + 1, { lists: index }), 'lists', started);
    }
  }

  private swap(next: PolicySnapshot, reason: SwapEvent['reason'], started: number): void {
    this.snapshot = next;
    this.emit('swap', { version: next.version, reason, buildMs: performance.now() - started });
  }
}

import type { AppId, Catalog } from '../catalog/index.js';
import { parseCidr, type ParsedCidr } from '../match/ip.js';
import { isNamePattern, parseNamePattern } from '../match/name-pattern.js';
import { PortSet, parsePortSpec } from '../match/ports.js';
import type { AdminRule } from './admin-rule.js';
import { RuleIndexBuilder, type RuleIndex } from './rule-index.js';
import type { Action, CompiledRule } from './rule.js';

const EVERY_V4: ParsedCidr = parseCidr('0.0.0.0/0');
const EVERY_V6: ParsedCidr = parseCidr('::/0');

/**
 * The overlay index: the catalog's entries (every app, every tier: which of them are in force
 * is decided per snapshot from the app state) and the admin rules. A few hundred entries, so
 * it is rebuilt whole, synchronously, on every admin change.
 */
export function compileOverlay(catalog: Catalog, adminRules: readonly AdminRule[]): RuleIndex {
  const builder = new RuleIndexBuilder();
  for (const app of catalog.values()) {
    const origin = `catalog:${app.id}`;
    for (const domain of app.domains) {
      const kind = domain.match === 'exact' ? 'host' : 'domain';
      const rule = builder.addRule({ action: 'block', app: app.id, tier: domain.tier, kind, origin, portScope: 'all', ports: null, value: domain.name });
      if (domain.pattern !== null) builder.addPattern(domain.pattern, rule);
      else builder.addName(domain.name, domain.match === 'exact' ? 'exact' : 'suffix', rule);
    }
    for (const cidr of app.cidrs) {
      const portScope = cidr.scope === 'app-ports' ? 'app' : 'all';
      const rule = builder.addRule({ action: 'block', app: app.id, tier: cidr.tier, kind: 'cidr', origin, portScope, ports: null, value: null });
      builder.addCidr(cidr.cidr, rule);
    }
    for (const protocol of app.protocols) {
      const rule = builder.addRule({ action: 'block', app: app.id, tier: protocol.tier, kind: 'protocol', origin, portScope: 'all', ports: null, value: protocol.id });
      builder.addProtocol(protocol.id, rule);
    }
    for (const port of app.ports) {
      builder.addAppPortRule({
        action: 'block',
        app: app.id,
        tier: port.tier,
        kind: 'port',
        origin,
        portScope: 'own',
        ports: PortSet.of([port.range]),
        value: port.text,
      });
    }
  }
  for (const admin of adminRules) addAdminRule(builder, admin);
  return builder.build();
}

function addAdminRule(builder: RuleIndexBuilder, admin: AdminRule): void {
  const base = { action: admin.action, app: admin.app, tier: null, origin: `admin:${admin.id}` } as const;
  switch (admin.type) {
    case 'domain': {
      const rule = builder.addRule({ ...base, kind: 'domain', portScope: 'all', ports: null, value: admin.value });
      if (isNamePattern(admin.value)) builder.addPattern(parseNamePattern(admin.value), rule);
      else builder.addName(admin.value, 'suffix', rule);
      return;
    }
    case 'cidr': {
      const rule = builder.addRule({ ...base, kind: 'cidr', portScope: 'all', ports: null, value: null });
      builder.addCidr(parseCidr(admin.value), rule);
      return;
    }
    case 'port': {
      const ports = PortSet.of(parsePortSpec(admin.value));
      const rule: CompiledRule = { ...base, kind: 'port', portScope: 'own', ports, value: admin.value };
      if (admin.app !== null) {
        // Joins the app's ports: its app-ports CIDRs now match on it too.
        builder.addAppPortRule(rule);
        return;
      }
      // No app: the port on every address, the least specific address rule there is.
      const index = builder.addRule(rule);
      builder.addCidr(EVERY_V4, index);
      builder.addCidr(EVERY_V6, index);
      return;
    }
  }
}

/** One parsed extra list, as the lists module hands it over. */
export interface ListEntries {
  name: string;
  action: Action;
  app: AppId | null;
  /** Names blocked (or allowed) with every subdomain. */
  suffix: readonly string[];
  /** Names blocked (or allowed) exactly. */
  exact: readonly string[];
  /** Exceptions inside a block list (adblock `@@||name^`): always allow, with subdomains. */
  allowSuffix: readonly string[];
  cidrs: readonly ParsedCidr[];
}

/**
 * The lists index, built in slices that yield to the event loop: a million entries take a
 * second or so of CPU and must not stall the DNS and proxy listeners meanwhile.
 */
export async function compileLists(lists: readonly ListEntries[]): Promise<RuleIndex> {
  const builder = new RuleIndexBuilder(lists.reduce((n, l) => n + l.suffix.length + l.exact.length + l.allowSuffix.length, 0));
  for (const list of lists) {
    const origin = `list:${list.name}`;
    const make = (action: Action, kind: CompiledRule['kind']): number =>
      builder.addRule({ action, app: list.app, tier: null, kind, origin, portScope: 'all', ports: null, value: null });
    if (list.suffix.length > 0) await builder.addNamesSliced(list.suffix, 'suffix', make(list.action, 'domain'));
    if (list.exact.length > 0) await builder.addNamesSliced(list.exact, 'exact', make(list.action, 'host'));
    if (list.allowSuffix.length > 0) await builder.addNamesSliced(list.allowSuffix, 'suffix', make('allow', 'domain'));
    if (list.cidrs.length > 0) await builder.addCidrsSliced(list.cidrs, make(list.action, 'cidr'));
  }
  return builder.build();
}

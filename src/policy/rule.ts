import type { AppId, Tier } from '../catalog/index.js';
import type { PortSet } from '../match/ports.js';

export type Action = 'block' | 'allow';
/** protocol: recognised by its bytes on an intercepted connection (KakaoTalk LOCO), whatever the address. */
export type Layer = 'dns' | 'tls' | 'http' | 'quic' | 'ip' | 'protocol';

/**
 * How a rule is reported in a decision: `domain:kakao.com` (the name and its subdomains),
 * `host:a.b` (that name only), `cidr:1.2.3.0/24`, `port:tcp/5223`, `protocol:loco`.
 */
export type RuleKind = 'domain' | 'host' | 'cidr' | 'port' | 'protocol';

/**
 * Which ports an address rule covers: every port; the ports of its app (KakaoTalk LOCO on
 * Kakao ranges shared with other services); or the rule's own ports (an admin port rule).
 */
export type PortScope = 'all' | 'app' | 'own';

/**
 * One rule as the snapshot sees it. Catalog entries and admin rules get one each; a list gets
 * one per (action, kind) it contains, shared by all its entries, so a million-line list costs
 * a million map entries and not a million objects.
 */
export interface CompiledRule {
  action: Action;
  app: AppId | null;
  /** Catalog tier; null for lists and admin rules (always on while their app is). */
  tier: Tier | null;
  kind: RuleKind;
  /** Where the rule comes from: `catalog:kakaotalk`, `list:<name>`, `admin:<id>`. */
  origin: string;
  portScope: PortScope;
  ports: PortSet | null;
  /**
   * The rule's own text when it has one (catalog entries, admin rules); null for list rules,
   * whose text is the key that matched.
   */
  value: string | null;
}

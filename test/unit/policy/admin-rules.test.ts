import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog, type Catalog } from '../../../src/catalog/index.js';
import { parseCidr, parseIp, type ParsedIp } from '../../../src/match/ip.js';
import { parsePortSpec, type Protocol } from '../../../src/match/ports.js';
import { PolicyEngine, normalizeAdminRule, type AdminRule, type AdminRuleInput } from '../../../src/policy/index.js';

let catalog: Catalog;
beforeAll(async () => {
  catalog = await loadCatalog();
});

/**
 * decide() against a reference written straight from docs/policy.md, over random sets of admin
 * rules of every type (domain, CIDR, port; block and allow; IPv4 and IPv6), with every app
 * switched off so only these rules are in force:
 *   - a name: the most specific domain rule covering it wins; at the same name, allow wins;
 *   - an address (and port): among the CIDR rules covering it and the port rules (which cover
 *     every address, on their ports only), the longest prefix wins; at the same prefix, allow;
 *   - either one blocked blocks.
 */
const NAMES = ['example.com', 'a.example.com', 'b.a.example.com', 'example.net', 'x.example.net', 'kakao.test'];
const CIDRS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '0.0.0.0/1', '192.0.2.0/24', '2001:db8::/32', '2001:db8:1::/48', '2001:db8:1:2::/64', '::/1'];
const PORTS = ['tcp/5222', 'udp/3478', '5228', 'tcp/9000-9100', 'udp/1-1024', '443'];
const ADDRESSES = ['10.1.2.3', '10.1.2.4', '10.1.9.9', '10.200.0.1', '8.8.8.8', '192.0.2.55', '200.1.1.1', '2001:db8:1:2::5', '2001:db8:1:9::1', '2001:db8:ffff::1', '2400::1', '::ffff:0:1'];
const QUERY_PORTS = [5222, 3478, 5228, 9000, 9050, 9100, 9101, 53, 443, 1024, 1025, 65535];

function contains(cidrText: string, ip: ParsedIp): boolean {
  const cidr = parseCidr(cidrText);
  if (cidr.family !== ip.family) return false;
  for (let bit = 0; bit < cidr.prefix; bit++) {
    const word = Math.floor(bit / 32);
    const mask = 1 << (31 - (bit % 32));
    if (((cidr.words[word]! & mask) !== 0) !== ((ip.words[word]! & mask) !== 0)) return false;
  }
  return true;
}

function reference(rules: readonly AdminRule[], query: { name: string | null; ip: string | null; port: number | null; proto: Protocol }): 'allow' | 'block' {
  let nameAction: string | null = null;
  if (query.name !== null) {
    const covering = rules.filter((r) => r.type === 'domain' && (query.name === r.value || query.name!.endsWith(`.${r.value}`)));
    const longest = Math.max(-1, ...covering.map((r) => r.value.length));
    const best = covering.filter((r) => r.value.length === longest);
    if (best.length > 0) nameAction = best.some((r) => r.action === 'allow') ? 'allow' : 'block';
  }
  let ipAction: string | null = null;
  if (query.ip !== null) {
    const ip = parseIp(query.ip)!;
    const candidates: { prefix: number; action: string }[] = [];
    for (const r of rules) {
      if (r.type === 'cidr' && contains(r.value, ip)) candidates.push({ prefix: parseCidr(r.value).prefix, action: r.action });
      if (r.type === 'port' && query.port !== null && parsePortSpec(r.value).some((p) => p.proto === query.proto && query.port! >= p.from && query.port! <= p.to)) {
        candidates.push({ prefix: 0, action: r.action });
      }
    }
    const longest = Math.max(-1, ...candidates.map((c) => c.prefix));
    const best = candidates.filter((c) => c.prefix === longest);
    if (best.length > 0) ipAction = best.some((c) => c.action === 'allow') ? 'allow' : 'block';
  }
  return nameAction === 'block' || ipAction === 'block' ? 'block' : 'allow';
}

const ruleInput: fc.Arbitrary<AdminRuleInput> = fc.oneof(
  fc.record({ type: fc.constant('domain' as const), value: fc.constantFrom(...NAMES), action: fc.constantFrom('block' as const, 'allow' as const) }),
  fc.record({ type: fc.constant('cidr' as const), value: fc.constantFrom(...CIDRS), action: fc.constantFrom('block' as const, 'allow' as const) }),
  fc.record({ type: fc.constant('port' as const), value: fc.constantFrom(...PORTS), action: fc.constantFrom('block' as const, 'allow' as const) }),
);

const query = fc.record({
  name: fc.option(fc.constantFrom(...NAMES, 'www.b.a.example.com', 'other.example.org', 'c.example.com'), { nil: null }),
  ip: fc.option(fc.constantFrom(...ADDRESSES), { nil: null }),
  port: fc.option(fc.constantFrom(...QUERY_PORTS), { nil: null }),
  proto: fc.constantFrom('tcp' as const, 'udp' as const),
});

describe('admin rules: decide() agrees with the documented reference', () => {
  it('over random rule sets of every type, on IPv4 and IPv6', () => {
    fc.assert(
      fc.property(fc.array(ruleInput, { maxLength: 12 }), fc.array(query, { minLength: 1, maxLength: 20 }), (inputs, queries) => {
        const rules = inputs.map((input, i): AdminRule => ({ id: `r${i + 1}`, ...normalizeAdminRule(input) }));
        const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(), extended: new Set() }, adminRules: rules });
        for (const q of queries) {
          const decided = engine.decide({ name: q.name, ip: q.ip, port: q.port, proto: q.proto, layer: q.ip === null ? 'dns' : 'ip' }).verdict;
          expect({ rules: rules.map((r) => `${r.action} ${r.type} ${r.value}`), query: q, verdict: decided }).toEqual({ rules: rules.map((r) => `${r.action} ${r.type} ${r.value}`), query: q, verdict: reference(rules, q) });
        }
      }),
      { numRuns: 400 },
    );
  });
});

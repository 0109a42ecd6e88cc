import { beforeAll, describe, expect, it } from 'vitest';
import { APP_IDS, loadCatalog, type Catalog } from '../../../src/catalog/index.js';
import { formatIp, parseCidr, parseIp } from '../../../src/match/ip.js';
import type { Protocol } from '../../../src/match/ports.js';
import { PolicyEngine, type AdminRule, type ListEntries } from '../../../src/policy/index.js';
import { parseConntrackList } from '../../../src/policy/conntrack.js';
import { exportNftables } from '../../../src/policy/nft-export.js';

let catalog: Catalog;
beforeAll(async () => {
  catalog = await loadCatalog();
});

/** What the exported chain does to one packet: the sets read the way nftables reads them. */
class NftModel {
  private readonly sets = new Map<string, { start: bigint; end: bigint; proto?: string; from?: number; to?: number }[]>();

  constructor(ruleset: string) {
    for (const match of ruleset.matchAll(/\tset (\w+) \{([\s\S]*?)\n\t\}/g)) {
      const body = match[2]!;
      const elements = /elements = \{([\s\S]*?)\}/.exec(body)?.[1] ?? '';
      const parsed = elements
        .split(',')
        .map((e) => e.trim())
        .filter((e) => e !== '')
        .map((element) => {
          const [range, proto, ports] = element.split(' . ') as [string, string?, string?];
          const [start, end = start] = range.split('-') as [string, string?];
          const [from, to = from] = ports === undefined ? [undefined, undefined] : ports.split('-').map(Number);
          return { start: value(start), end: value(end), proto, from, to };
        });
      this.sets.set(match[1]!, parsed);
    }
  }

  verdict(ip: string, proto: Protocol, port: number): 'allow' | 'block' {
    const family = ip.includes(':') ? 6 : 4;
    const address = value(ip);
    const has = (name: string, withPort: boolean): boolean =>
      (this.sets.get(`${name}${family}`) ?? []).some(
        (e) => address >= e.start && address <= e.end && (!withPort || (e.proto === proto && port >= e.from! && port <= e.to!)),
      );
    if (has('allow_ports', true)) return 'allow';
    if (has('block', false) || has('block_ports', true)) return 'block';
    return 'allow';
  }
}

function value(address: string): bigint {
  const ip = parseIp(address);
  if (ip === null) throw new Error(`not an address: ${address}`);
  let out = 0n;
  for (const word of ip.words) out = (out << 32n) | BigInt(word);
  return out;
}

/** A small seeded generator: the same cases every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

function rule(id: string, partial: Pick<AdminRule, 'type' | 'value'> & Partial<AdminRule>): AdminRule {
  return { id, action: 'block', app: null, comment: null, ...partial };
}

describe('exportNftables', () => {
  it('writes a table that replaces itself and holds the catalog ranges in force', () => {
    const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(APP_IDS), extended: new Set(['kakaotalk']) }, adminRules: [] });
    const { ruleset, stats } = exportNftables(engine.current, { table: 'gate' });
    expect(ruleset).toMatch(/^table inet gate \{\}\ndelete table inet gate\ntable inet gate \{/m);
    expect(ruleset).toContain('147.92.128.0-147.92.255.255');
    expect(ruleset).toContain('27.0.236.0-27.0.239.255 . tcp . 5223');
    expect(stats.blockRanges).toBeGreaterThan(5);
    const model = new NftModel(ruleset);
    expect(model.verdict('147.92.150.1', 'tcp', 9000)).toBe('block');
    expect(model.verdict('27.0.236.25', 'tcp', 5223)).toBe('block');
    expect(model.verdict('27.0.236.25', 'tcp', 443)).toBe('allow');
    expect(model.verdict('8.8.8.8', 'udp', 53)).toBe('allow');
  });

  it('an app switched off leaves the ruleset', () => {
    const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(['kakaotalk']), extended: new Set() }, adminRules: [] });
    const { ruleset } = exportNftables(engine.current, { table: 'portcullis' });
    expect(ruleset).not.toContain('147.92.128.0');
    expect(ruleset).toContain('110.76.140.0-110.76.143.255');
  });

  it('agrees with decide() on every sampled address, protocol and port, for overlapping block and allow rules of every scope', async () => {
    const next = random(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    // Rules around the Kakao ranges (app-port scoped) and LINE's, nested both ways.
    const adminRules: AdminRule[] = [
      rule('a1', { type: 'cidr', value: '27.0.237.0/24', action: 'allow' }),
      rule('a2', { type: 'cidr', value: '27.0.237.128/25' }),
      rule('a3', { type: 'cidr', value: '147.92.200.0/24', action: 'allow' }),
      rule('a4', { type: 'cidr', value: '147.92.200.64/26' }),
      rule('a5', { type: 'port', value: 'tcp/9000-9100', app: 'kakaotalk' }),
      rule('a6', { type: 'port', value: 'tcp/5228', app: 'kakaotalk', action: 'allow' }),
      rule('a7', { type: 'cidr', value: '2001:db8::/32' }),
      rule('a8', { type: 'cidr', value: '2001:db8:1::/48', action: 'allow' }),
    ];
    const lists: ListEntries[] = [
      { name: 'extra', action: 'block', app: null, suffix: [], exact: [], allowSuffix: [], cidrs: ['10.20.0.0/16', '27.0.238.0/23', '1.201.0.128/25'].map((c) => parseCidr(c)) },
      { name: 'holes', action: 'allow', app: null, suffix: [], exact: [], allowSuffix: [], cidrs: ['10.20.5.0/24', '147.92.130.0/24'].map((c) => parseCidr(c)) },
    ];
    const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(APP_IDS), extended: new Set(['kakaotalk']) }, adminRules });
    await engine.setLists(lists);
    const snapshot = engine.current;
    const model = new NftModel(exportNftables(snapshot, { table: 'portcullis' }).ruleset);
    const bases = ['27.0.236.0', '27.0.237.0', '27.0.237.128', '27.0.238.0', '147.92.128.0', '147.92.200.0', '147.92.200.64', '10.20.0.0', '10.20.5.0', '1.201.0.0', '1.201.1.0', '110.76.140.0', '8.8.8.0'];
    const ports = [1, 443, 995, 5222, 5223, 5224, 5228, 8080, 9000, 9050, 9100, 9101, 10000, 10009, 23044, 23047, 65535];
    let compared = 0;
    for (let i = 0; i < 20_000; i++) {
      const base = parseIp(pick(bases))!;
      const words = Uint32Array.from(base.words);
      words[0] = (words[0]! + Math.floor(next() * 1024) - 64) >>> 0;
      const ip = formatIp({ family: 4, words });
      const proto: Protocol = next() < 0.7 ? 'tcp' : 'udp';
      const port = next() < 0.8 ? pick(ports) : 1 + Math.floor(next() * 65535);
      const expected = snapshot.decide({ ip, port, proto, layer: 'ip' }).verdict;
      expect({ ip, proto, port, verdict: model.verdict(ip, proto, port) }).toEqual({ ip, proto, port, verdict: expected });
      compared++;
    }
    for (const ip of ['2001:db8::1', '2001:db8:1::5', '2001:db8:2::', '2001:db9::1']) {
      expect(model.verdict(ip, 'tcp', 443)).toBe(snapshot.decide({ ip, port: 443, proto: 'tcp', layer: 'ip' }).verdict);
    }
    expect(compared).toBe(20_000);
    // The lists are in force: a list block and a list hole inside LINE's range.
    expect(snapshot.decide({ ip: '10.20.1.1', port: 80, layer: 'ip' }).verdict).toBe('block');
    expect(snapshot.decide({ ip: '10.20.5.1', port: 80, layer: 'ip' }).verdict).toBe('allow');
    expect(snapshot.decide({ ip: '147.92.130.1', port: 80, layer: 'ip' }).verdict).toBe('allow');
  });
});

describe('what the export does to a flow it blocks', () => {
  it('rejects instead of dropping: TCP with a reset, the rest with an ICMP unreachable, for every blocking set', () => {
    const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(APP_IDS), extended: new Set(['kakaotalk']) }, adminRules: [] });
    const { ruleset } = exportNftables(engine.current, { table: 'portcullis' });
    expect(ruleset).not.toMatch(/\bdrop\b/);
    for (const family of ['ip', 'ip6']) {
      const set = family === 'ip' ? '4' : '6';
      expect(ruleset).toContain(`meta l4proto tcp ${family} daddr @block${set} counter reject with tcp reset`);
      expect(ruleset).toContain(`${family} daddr @block${set} counter reject\n`);
      expect(ruleset).toContain(`meta l4proto tcp ${family} daddr . meta l4proto . th dport @block_ports${set} counter reject with tcp reset`);
      expect(ruleset).toContain(`meta l4proto udp ${family} daddr . meta l4proto . th dport @block_ports${set} counter reject`);
    }
  });

  it('reads tracked flows from conntrack -L by their original direction, skipping what has no ports', () => {
    const listing = [
      'tcp      6 431999 ESTABLISHED src=10.77.1.2 dst=27.0.236.25 sport=41234 dport=5228 src=27.0.236.25 dst=10.77.2.1 sport=5228 dport=41234 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.77.1.2 dst=198.18.0.10 sport=5353 dport=443 [UNREPLIED] src=198.18.0.10 dst=10.77.1.2 sport=443 dport=5353 mark=0 use=1',
      'icmp     1 29 src=10.77.1.2 dst=198.18.0.10 type=8 code=0 id=7 src=198.18.0.10 dst=10.77.1.2 type=0 code=0 id=7 mark=0 use=1',
      'tcp      6 118 SYN_SENT src=fd77:1::2 dst=2400:dcc0::1 sport=50000 dport=443 [UNREPLIED] src=2400:dcc0::1 dst=fd77:1::2 sport=443 dport=50000 mark=0 use=1',
      'conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.',
      '',
    ].join('\n');
    expect(parseConntrackList(listing)).toEqual([
      { proto: 'tcp', src: '10.77.1.2', dst: '27.0.236.25', sport: 41234, dport: 5228 },
      { proto: 'udp', src: '10.77.1.2', dst: '198.18.0.10', sport: 5353, dport: 443 },
      { proto: 'tcp', src: 'fd77:1::2', dst: '2400:dcc0::1', sport: 50000, dport: 443 },
    ]);
  });
});

import type { ParsedIp } from '../match/ip.js';
import type { PortRange, Protocol } from '../match/ports.js';
import type { AddressPrefix, PolicySnapshot } from './snapshot.js';

/**
 * The IP layer of a policy as an nftables ruleset, so the kernel drops at line rate what the
 * proxy would refuse by address and port (KakaoTalk LOCO on Kakao ranges, LINE's networks).
 *
 * The snapshot's own decide() is the judge, so the export cannot drift from what the gateway
 * enforces: the address space is cut at every prefix boundary and the port space at every
 * port-set boundary, and one decision per piece says block or allow. Within a piece nothing
 * decide() looks at changes, so longest-prefix-wins, allow-over-block and app-port scopes
 * come out exactly as the proxy applies them. The pieces are emitted as:
 *   - block: addresses blocked on every port and protocol;
 *   - allow_ports: (address, protocol, port) holes in those, accepted first;
 *   - block_ports: (address, protocol, port) blocked where the rest of the address is not.
 */
export interface NftExportOptions {
  /** nftables table name (inet family). */
  table: string;
}

export interface NftExportStats {
  blockRanges: number;
  portElements: number;
}

interface Piece {
  start: bigint;
  end: bigint;
  /** Whether some prefix over the piece has port-limited rules: then ports are judged one by one. */
  isPortScoped: boolean;
}

interface PortSegment {
  proto: Protocol;
  from: number;
  to: number;
}

interface FamilyExport {
  block: [bigint, bigint][];
  allowPorts: [bigint, bigint, PortSegment][];
  blockPorts: [bigint, bigint, PortSegment][];
}

export function exportNftables(snapshot: PolicySnapshot, options: NftExportOptions): { ruleset: string; stats: NftExportStats } {
  const prefixes = snapshot.addressPrefixes();
  const v4 = exportFamily(snapshot, prefixes, 4);
  const v6 = exportFamily(snapshot, prefixes, 6);
  const stats = {
    blockRanges: v4.block.length + v6.block.length,
    portElements: v4.allowPorts.length + v4.blockPorts.length + v6.allowPorts.length + v6.blockPorts.length,
  };
  return { ruleset: render(options.table, snapshot.version, v4, v6), stats };
}

function exportFamily(snapshot: PolicySnapshot, all: readonly AddressPrefix[], family: 4 | 6): FamilyExport {
  const bits = family === 4 ? 32 : 128;
  const prefixes = all.filter((p) => p.family === family);
  const segments = portSegments(prefixes);
  const out: FamilyExport = { block: [], allowPorts: [], blockPorts: [] };
  for (const piece of pieces(prefixes, bits)) {
    const ip: ParsedIp = { family, words: toWords(piece.start, bits) };
    if (!piece.isPortScoped) {
      if (snapshot.decide({ ip, port: null, layer: 'ip' }).verdict === 'block') appendRange(out.block, piece.start, piece.end);
      continue;
    }
    const verdicts = segments.map((segment) => snapshot.decide({ ip, port: segment.from, proto: segment.proto, layer: 'ip' }).verdict === 'block');
    // The verdict of ports no port set names (the same for all of them): the piece's default.
    const defaultIndex = segments.findIndex((segment) => segment.isUnnamed);
    const isBlockedByDefault = defaultIndex === -1 ? verdicts.every(Boolean) : verdicts[defaultIndex]!;
    if (isBlockedByDefault) appendRange(out.block, piece.start, piece.end);
    segments.forEach((segment, i) => {
      if (verdicts[i] === isBlockedByDefault) return;
      (isBlockedByDefault ? out.allowPorts : out.blockPorts).push([piece.start, piece.end, segment]);
    });
  }
  return out;
}

/** Splits the address space at every prefix boundary; yields the pieces some prefix covers. */
function* pieces(prefixes: readonly AddressPrefix[], bits: number): Generator<Piece> {
  const events = new Map<bigint, { covering: number; portScoped: number }>();
  const at = (point: bigint): { covering: number; portScoped: number } => {
    let event = events.get(point);
    if (event === undefined) {
      event = { covering: 0, portScoped: 0 };
      events.set(point, event);
    }
    return event;
  };
  for (const p of prefixes) {
    const start = toBigInt(p.words);
    const end = start + (1n << BigInt(bits - p.prefix)) - 1n;
    const portScoped = p.portSets.length > 0 ? 1 : 0;
    const open = at(start);
    open.covering++;
    open.portScoped += portScoped;
    const close = at(end + 1n);
    close.covering--;
    close.portScoped -= portScoped;
  }
  const points = [...events.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let covering = 0;
  let portScoped = 0;
  for (let i = 0; i < points.length - 1; i++) {
    const event = events.get(points[i]!)!;
    covering += event.covering;
    portScoped += event.portScoped;
    if (covering > 0) yield { start: points[i]!, end: points[i + 1]! - 1n, isPortScoped: portScoped > 0 };
  }
}

/**
 * The port space of each protocol cut at every boundary of every port set in play; a segment
 * no set names is marked, since all such segments share one verdict.
 */
function portSegments(prefixes: readonly AddressPrefix[]): (PortSegment & { isUnnamed: boolean })[] {
  const ranges: PortRange[] = [];
  const seen = new Set<object>();
  for (const p of prefixes) {
    for (const set of p.portSets) {
      if (seen.has(set)) continue;
      seen.add(set);
      ranges.push(...set.ranges());
    }
  }
  const out: (PortSegment & { isUnnamed: boolean })[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const cuts = new Set<number>([0, 65536]);
    for (const r of ranges) {
      if (r.proto !== proto) continue;
      cuts.add(r.from);
      cuts.add(r.to + 1);
    }
    const sorted = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i < sorted.length - 1; i++) {
      const from = sorted[i]!;
      const to = sorted[i + 1]! - 1;
      out.push({ proto, from, to, isUnnamed: !ranges.some((r) => r.proto === proto && r.from <= from && r.to >= to) });
    }
  }
  return out;
}

function appendRange(list: [bigint, bigint][], start: bigint, end: bigint): void {
  const last = list[list.length - 1];
  if (last !== undefined && last[1] + 1n === start) last[1] = end;
  else list.push([start, end]);
}

function toBigInt(words: Uint32Array): bigint {
  let value = 0n;
  for (const word of words) value = (value << 32n) | BigInt(word);
  return value;
}

function toWords(value: bigint, bits: number): Uint32Array {
  const words = new Uint32Array(bits / 32);
  for (let i = words.length - 1; i >= 0; i--) {
    words[i] = Number(value & 0xffffffffn);
    value >>= 32n;
  }
  return words;
}

function formatAddress(value: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((value >> shift) & 0xffffn).toString(16));
  // nftables reads the full eight-group form; no need to compress.
  return groups.join(':');
}

function formatRange(start: bigint, end: bigint, family: 4 | 6): string {
  return start === end ? formatAddress(start, family) : `${formatAddress(start, family)}-${formatAddress(end, family)}`;
}

function formatPorts(segment: PortSegment): string {
  return segment.from === segment.to ? String(segment.from) : `${segment.from}-${segment.to}`;
}

function setBlock(name: string, type: string, elements: string[]): string {
  const body = elements.length === 0 ? '' : `\n\t\telements = {\n\t\t\t${elements.join(',\n\t\t\t')}\n\t\t}`;
  return `\tset ${name} {\n\t\ttype ${type}\n\t\tflags interval${body}\n\t}\n`;
}

function render(table: string, version: number, v4: FamilyExport, v6: FamilyExport): string {
  const sets: string[] = [];
  const rules: string[] = [];
  for (const [family, data, keyword, type] of [
    [4, v4, 'ip', 'ipv4_addr'],
    [6, v6, 'ip6', 'ipv6_addr'],
  ] as const) {
    const portElements = (list: FamilyExport['allowPorts']): string[] => list.map(([start, end, segment]) => `${formatRange(start, end, family)} . ${segment.proto} . ${formatPorts(segment)}`);
    sets.push(setBlock(`block${family}`, type, data.block.map(([start, end]) => formatRange(start, end, family))));
    sets.push(setBlock(`allow_ports${family}`, `${type} . inet_proto . inet_service`, portElements(data.allowPorts)));
    sets.push(setBlock(`block_ports${family}`, `${type} . inet_proto . inet_service`, portElements(data.blockPorts)));
    // Rejected, not dropped: a TCP flow already forwarded ends at its next segment with a reset
    // (the client learns at once, instead of retransmitting into silence); the rest get an
    // ICMP unreachable.
    rules.push(
      `\t\tmeta l4proto { tcp, udp } ${keyword} daddr . meta l4proto . th dport @allow_ports${family} accept`,
      `\t\tmeta l4proto tcp ${keyword} daddr @block${family} counter reject with tcp reset`,
      `\t\t${keyword} daddr @block${family} counter reject`,
      `\t\tmeta l4proto tcp ${keyword} daddr . meta l4proto . th dport @block_ports${family} counter reject with tcp reset`,
      `\t\tmeta l4proto udp ${keyword} daddr . meta l4proto . th dport @block_ports${family} counter reject`,
    );
  }
  return [
    `# portcullis IP layer, policy version ${version}. Generated: edits are overwritten.`,
    '# Load with `nft -f FILE`; it replaces only its own table.',
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    ...sets,
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    ...rules,
    '\t}',
    '}',
    '',
  ].join('\n');
}

import { PortcullisError } from '../errors.js';

export type Protocol = 'tcp' | 'udp';

export interface PortRange {
  proto: Protocol;
  from: number;
  to: number;
}

/**
 * Parses `tcp/5223`, `udp/23044-23047` or a bare `5223` (TCP). Throws PCL_ERR_INVALID_PORT
 * saying what is wrong.
 */
export function parsePortRange(input: string): PortRange {
  const text = input.trim().toLowerCase();
  const match = /^(?:(tcp|udp)\/)?([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(text);
  if (match === null) {
    throw invalidPort(input, 'expected tcp/N, udp/N, tcp/N-M or N');
  }
  const proto = (match[1] ?? 'tcp') as Protocol;
  const from = Number(match[2]);
  const to = match[3] === undefined ? from : Number(match[3]);
  if (from < 1 || from > 65535 || to < 1 || to > 65535) throw invalidPort(input, 'ports run from 1 to 65535');
  if (to < from) throw invalidPort(input, 'range end is below its start');
  return { proto, from, to };
}

/**
 * An admin port rule's ports: `tcp/N[-M]`, `udp/N[-M]`, or a bare `N[-M]`, which means TCP and
 * UDP (a port blocked "as such" is blocked for both). Throws PCL_ERR_INVALID_PORT.
 */
export function parsePortSpec(input: string): PortRange[] {
  const range = parsePortRange(input);
  return /^\s*(tcp|udp)\//i.test(input) ? [range] : [range, { ...range, proto: 'udp' }];
}

/** The stored form of a port spec: `tcp/N`, `udp/N-M`, or a bare `N` for both protocols. */
export function formatPortSpec(ranges: readonly PortRange[]): string {
  const [first] = ranges;
  if (first === undefined) throw invalidPort('', 'no ports');
  const span = first.from === first.to ? String(first.from) : `${first.from}-${first.to}`;
  return ranges.length > 1 ? span : `${first.proto}/${span}`;
}

export function formatPortRange(range: PortRange): string {
  return range.from === range.to ? `${range.proto}/${range.from}` : `${range.proto}/${range.from}-${range.to}`;
}

function invalidPort(input: string, why: string): PortcullisError {
  return new PortcullisError('PCL_ERR_INVALID_PORT', `"${input}" is not a valid port: ${why}`, { details: { input } });
}

/** A set of TCP and UDP ports as two 65,536-bit bitmaps: membership is one array read. */
export class PortSet {
  private readonly tcp = new Uint8Array(8192);
  private readonly udp = new Uint8Array(8192);
  private count = 0;

  static of(ranges: Iterable<PortRange>): PortSet {
    const set = new PortSet();
    for (const range of ranges) set.add(range);
    return set;
  }

  get isEmpty(): boolean {
    return this.count === 0;
  }

  add(range: PortRange): void {
    this.write(range, true);
  }

  delete(range: PortRange): void {
    this.write(range, false);
  }

  addAll(other: PortSet): void {
    this.merge(other, true);
  }

  deleteAll(other: PortSet): void {
    this.merge(other, false);
  }

  has(proto: Protocol, port: number): boolean {
    const bits = proto === 'tcp' ? this.tcp : this.udp;
    return ((bits[port >>> 3] ?? 0) & (1 << (port & 7))) !== 0;
  }

  /** The set as maximal runs of consecutive ports, TCP first (for export, not the hot path). */
  ranges(): PortRange[] {
    const out: PortRange[] = [];
    for (const proto of ['tcp', 'udp'] as const) {
      let from = -1;
      for (let port = 0; port <= 65536; port++) {
        const isIn = port <= 65535 && this.has(proto, port);
        if (isIn && from === -1) from = port;
        if (!isIn && from !== -1) {
          out.push({ proto, from, to: port - 1 });
          from = -1;
        }
      }
    }
    return out;
  }

  private merge(other: PortSet, on: boolean): void {
    for (const proto of ['tcp', 'udp'] as const) {
      for (let port = 1; port <= 65535; port++) {
        if (other.has(proto, port)) this.write({ proto, from: port, to: port }, on);
      }
    }
  }

  private write(range: PortRange, on: boolean): void {
    const bits = range.proto === 'tcp' ? this.tcp : this.udp;
    for (let port = range.from; port <= range.to; port++) {
      const mask = 1 << (port & 7);
      const byte = bits[port >>> 3]!;
      const isSet = (byte & mask) !== 0;
      if (on && !isSet) {
        bits[port >>> 3] = byte | mask;
        this.count++;
      } else if (!on && isSet) {
        bits[port >>> 3] = byte & ~mask;
        this.count--;
      }
    }
  }
}

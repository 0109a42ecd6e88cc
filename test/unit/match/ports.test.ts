import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { PortcullisError } from '../../../src/errors.js';
import { formatPortRange, parsePortRange, PortSet, type PortRange, type Protocol } from '../../../src/match/ports.js';

function thrown(fn: () => unknown): PortcullisError {
  try {
    fn();
  } catch (e: unknown) {
    if (e instanceof PortcullisError) return e;
    throw e;
  }
  throw new Error('expected a PortcullisError, nothing was thrown');
}

function setOf(...texts: string[]): PortSet {
  return PortSet.of(texts.map((text) => parsePortRange(text)));
}

const protocol = fc.constantFrom<Protocol>('tcp', 'udp');
const port = fc.integer({ min: 1, max: 65535 });
const range = fc
  .record({ proto: protocol, a: port, b: port })
  .map(({ proto, a, b }): PortRange => ({ proto, from: Math.min(a, b), to: Math.max(a, b) }));

describe('parsePortRange', () => {
  it.each<[string, PortRange]>([
    ['tcp/5223', { proto: 'tcp', from: 5223, to: 5223 }],
    ['udp/23044-23047', { proto: 'udp', from: 23044, to: 23047 }],
    ['5223', { proto: 'tcp', from: 5223, to: 5223 }],
    ['10000-10010', { proto: 'tcp', from: 10000, to: 10010 }],
    ['TCP/80', { proto: 'tcp', from: 80, to: 80 }],
    ['Udp/53', { proto: 'udp', from: 53, to: 53 }],
    ['  udp/53  ', { proto: 'udp', from: 53, to: 53 }],
    ['tcp/1', { proto: 'tcp', from: 1, to: 1 }],
    ['tcp/65535', { proto: 'tcp', from: 65535, to: 65535 }],
    ['udp/1-65535', { proto: 'udp', from: 1, to: 65535 }],
    ['tcp/443-443', { proto: 'tcp', from: 443, to: 443 }],
  ])('parses %j', (text, expected) => {
    expect(parsePortRange(text)).toEqual(expected);
  });

  it.each([
    '0',
    'tcp/0',
    'udp/0-10',
    '65536',
    'tcp/65536',
    'tcp/1-65536',
    'tcp/99999',
    'tcp/123456',
    'udp/100-99',
    'tcp/65535-1',
    'sctp/1',
    'icmp/8',
    '',
    '   ',
    'tcp/',
    'tcp/80-',
    '-80',
    'tcp/-1',
    'tcp/ 80',
    'tcp /80',
    'tcp/80,443',
    'tcp/80-90-100',
    '80.5',
    'tcp/http',
  ])('refuses %j with PCL_ERR_INVALID_PORT', (text) => {
    const err = thrown(() => parsePortRange(text));
    expect(err.code).toBe('PCL_ERR_INVALID_PORT');
    expect(err.details).toEqual({ input: text });
  });

  it('says why a range is refused', () => {
    expect(thrown(() => parsePortRange('tcp/0')).message).toContain('1 to 65535');
    expect(thrown(() => parsePortRange('udp/100-99')).message).toContain('below its start');
    expect(thrown(() => parsePortRange('sctp/1')).message).toContain('"sctp/1"');
  });

  it('parses what formatPortRange writes back to the same range', () => {
    fc.assert(
      fc.property(range, (r) => {
        expect(parsePortRange(formatPortRange(r))).toEqual(r);
      }),
    );
  });
});

describe('formatPortRange', () => {
  it.each<[PortRange, string]>([
    [{ proto: 'tcp', from: 5223, to: 5223 }, 'tcp/5223'],
    [{ proto: 'udp', from: 23044, to: 23047 }, 'udp/23044-23047'],
    [{ proto: 'tcp', from: 1, to: 65535 }, 'tcp/1-65535'],
  ])('writes %j as %j', (r, text) => {
    expect(formatPortRange(r)).toBe(text);
  });
});

describe('PortSet', () => {
  it('starts empty and holds nothing', () => {
    const set = new PortSet();
    expect(set.isEmpty).toBe(true);
    expect(set.has('tcp', 80)).toBe(false);
    expect(set.has('udp', 53)).toBe(false);
  });

  it('holds every port of a range and none beside it', () => {
    const set = setOf('udp/23044-23047');
    expect(set.isEmpty).toBe(false);
    expect(set.has('udp', 23043)).toBe(false);
    for (let p = 23044; p <= 23047; p++) expect(set.has('udp', p)).toBe(true);
    expect(set.has('udp', 23048)).toBe(false);
  });

  it('keeps TCP and UDP apart', () => {
    const set = setOf('tcp/5223', 'udp/53');
    expect(set.has('tcp', 5223)).toBe(true);
    expect(set.has('udp', 5223)).toBe(false);
    expect(set.has('udp', 53)).toBe(true);
    expect(set.has('tcp', 53)).toBe(false);
  });

  it('holds the boundary ports 1 and 65535', () => {
    const set = setOf('tcp/1', 'udp/65535');
    expect(set.has('tcp', 1)).toBe(true);
    expect(set.has('tcp', 2)).toBe(false);
    expect(set.has('udp', 65535)).toBe(true);
    expect(set.has('udp', 65534)).toBe(false);
    expect(set.has('tcp', 65535)).toBe(false);
    expect(set.has('udp', 1)).toBe(false);
  });

  it('answers false outside 1-65535 even when every port is in the set', () => {
    const set = setOf('tcp/1-65535');
    expect(set.has('tcp', 1)).toBe(true);
    expect(set.has('tcp', 65535)).toBe(true);
    expect(set.has('tcp', 0)).toBe(false);
    expect(set.has('tcp', 65536)).toBe(false);
    expect(set.has('tcp', -1)).toBe(false);
    expect(set.has('udp', 1)).toBe(false);
  });

  it('deletes part of a range', () => {
    const set = setOf('tcp/100-200');
    set.delete(parsePortRange('tcp/150-250'));
    expect(set.has('tcp', 149)).toBe(true);
    expect(set.has('tcp', 150)).toBe(false);
    expect(set.has('tcp', 200)).toBe(false);
    expect(set.isEmpty).toBe(false);
  });

  it('is empty again after overlapping adds are deleted once', () => {
    const set = setOf('tcp/1-10', 'tcp/5-15', 'tcp/10');
    set.delete(parsePortRange('tcp/1-15'));
    expect(set.isEmpty).toBe(true);
  });

  it('stays non-empty when deleting ports it never held', () => {
    const set = setOf('tcp/80');
    set.delete(parsePortRange('tcp/81-1000'));
    set.delete(parsePortRange('udp/80'));
    expect(set.isEmpty).toBe(false);
    expect(set.has('tcp', 80)).toBe(true);
    set.delete(parsePortRange('tcp/80'));
    expect(set.isEmpty).toBe(true);
  });

  it('adds and deletes whole sets', () => {
    const set = setOf('tcp/80', 'udp/53');
    set.addAll(setOf('tcp/443', 'udp/65535', 'tcp/80'));
    expect(set.has('tcp', 80)).toBe(true);
    expect(set.has('tcp', 443)).toBe(true);
    expect(set.has('udp', 53)).toBe(true);
    expect(set.has('udp', 65535)).toBe(true);
    expect(set.has('udp', 443)).toBe(false);

    set.deleteAll(setOf('tcp/443', 'udp/53', 'udp/1'));
    expect(set.has('tcp', 443)).toBe(false);
    expect(set.has('udp', 53)).toBe(false);
    expect(set.has('tcp', 80)).toBe(true);
    expect(set.has('udp', 65535)).toBe(true);

    set.deleteAll(setOf('tcp/80', 'udp/65535'));
    expect(set.isEmpty).toBe(true);
  });

  it('leaves the other set untouched by addAll and deleteAll', () => {
    const other = setOf('tcp/443');
    const set = new PortSet();
    set.addAll(other);
    set.deleteAll(other);
    expect(set.isEmpty).toBe(true);
    expect(other.has('tcp', 443)).toBe(true);
  });

  it('behaves like a set of (protocol, port) pairs under any adds and deletes', () => {
    const op = fc.record({ isAdd: fc.boolean(), range: range.map((r) => ({ ...r, to: Math.min(r.to, r.from + 300) })) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), fc.array(fc.tuple(protocol, port), { maxLength: 50 }), (ops, probes) => {
        const set = new PortSet();
        const reference = new Set<string>();
        for (const { isAdd, range: r } of ops) {
          if (isAdd) set.add(r);
          else set.delete(r);
          for (let p = r.from; p <= r.to; p++) {
            if (isAdd) reference.add(`${r.proto}/${p}`);
            else reference.delete(`${r.proto}/${p}`);
          }
        }
        expect(set.isEmpty).toBe(reference.size === 0);
        const touched = ops.map(({ range: r }): [Protocol, number] => [r.proto, r.from]);
        for (const [proto, p] of [...probes, ...touched]) expect(set.has(proto, p)).toBe(reference.has(`${proto}/${p}`));
      }),
      { numRuns: 300 },
    );
  });
});

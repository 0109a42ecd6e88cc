import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { PortcullisError } from '../../../src/errors.js';
import { formatCidr, formatIp, maskWords, parseCidr, parseIp, type ParsedIp } from '../../../src/match/ip.js';

function thrown(fn: () => unknown): PortcullisError {
  try {
    fn();
  } catch (e: unknown) {
    if (e instanceof PortcullisError) return e;
    throw e;
  }
  throw new Error('expected a PortcullisError, nothing was thrown');
}

function plain(ip: ParsedIp | null): { family: 4 | 6; words: number[] } | null {
  return ip === null ? null : { family: ip.family, words: Array.from(ip.words) };
}

/** Node's own (WHATWG URL) serialisation of an IPv6 address: RFC 5952 form, no brackets. */
function nodeCanonicalV6(text: string): string {
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
const groups = fc.array(group, { minLength: 8, maxLength: 8 });

function wordsOf(g: readonly number[]): Uint32Array {
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) words[i] = ((g[2 * i]! << 16) | g[2 * i + 1]!) >>> 0;
  return words;
}

function isMapped(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

describe('parseIp', () => {
  it.each([
    ['1.2.3.4', 0x01020304],
    ['0.0.0.0', 0],
    ['255.255.255.255', 0xffffffff],
    ['10.0.0.1', 0x0a000001],
    ['[192.0.2.1]', 0xc0000201],
  ])('parses the IPv4 address %j', (text, word) => {
    expect(plain(parseIp(text))).toEqual({ family: 4, words: [word] });
  });

  it.each([
    ['::', [0, 0, 0, 0]],
    ['::1', [0, 0, 0, 1]],
    ['2001:db8::1', [0x20010db8, 0, 0, 1]],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', [0x20010db8, 0, 0, 1]],
    ['2001:db8:1:2:3:4:5:6', [0x20010db8, 0x00010002, 0x00030004, 0x00050006]],
    ['fe80::', [0xfe800000, 0, 0, 0]],
    ['64:ff9b::192.0.2.33', [0x0064ff9b, 0, 0, 0xc0000221]],
    ['::1.2.3.4', [0, 0, 0, 0x01020304]],
    ['::ffff:0:1.2.3.4', [0, 0, 0xffff0000, 0x01020304]],
    ['fe80::1%eth0', [0xfe800000, 0, 0, 1]],
    ['[2001:db8::1]', [0x20010db8, 0, 0, 1]],
    ['[fe80::1%25eth0]', [0xfe800000, 0, 0, 1]],
  ])('parses the IPv6 address %j', (text, words) => {
    expect(plain(parseIp(text))).toEqual({ family: 6, words });
  });

  it.each(['::ffff:1.2.3.4', '::FFFF:102:304', '0:0:0:0:0:ffff:1.2.3.4', '[::ffff:1.2.3.4]', '::ffff:1.2.3.4%eth0'])(
    'returns the IPv4-mapped address %j as the IPv4 address',
    (text) => {
      expect(plain(parseIp(text))).toEqual(plain(parseIp('1.2.3.4')));
    },
  );

  it.each([
    '01.2.3.4',
    '1.2.3.010',
    '1.2.3.256',
    '256.0.0.0',
    '1.2.3',
    '1.2.3.4.5',
    '1.2.3.-1',
    '0x1.2.3.4',
    '1.2.3.4/32',
    ' 1.2.3.4',
    '::ffff:01.2.3.4',
    '::ffff:1.2.3.256',
    '1::2::3',
    '12345::',
    'gggg::1',
    '1:2:3:4:5:6:7:8:9',
    '[::1',
    '::1]',
    '[]',
    '',
    'kakao.com',
  ])('returns null for %j', (text) => {
    expect(parseIp(text)).toBeNull();
  });

  it('round-trips every IPv4 address through formatIp', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (word) => {
        const text = formatIp({ family: 4, words: Uint32Array.of(word) });
        expect(text).toBe([word >>> 24, (word >>> 16) & 255, (word >>> 8) & 255, word & 255].join('.'));
        expect(plain(parseIp(text))).toEqual({ family: 4, words: [word] });
      }),
    );
  });

  it('parses any spelling of an IPv6 address to the same words, and formats them as Node does', () => {
    fc.assert(
      fc.property(groups, fc.boolean(), (g, upper) => {
        const words = wordsOf(g);
        const padded = g.map((n) => n.toString(16).padStart(4, '0')).join(':');
        const spelled = upper ? padded.toUpperCase() : padded;
        const parsed = parseIp(spelled);
        if (isMapped(words)) {
          expect(plain(parsed)).toEqual({ family: 4, words: [words[3]!] });
          return;
        }
        expect(plain(parsed)).toEqual({ family: 6, words: Array.from(words) });
        const text = formatIp(parsed!);
        expect(text).toBe(nodeCanonicalV6(spelled));
        expect(plain(parseIp(text))).toEqual(plain(parsed));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('formatIp', () => {
  it.each([
    [[0, 0, 0, 0], '::'],
    [[0, 0, 0, 1], '::1'],
    [[0x20010db8, 0, 0, 1], '2001:db8::1'],
    [[0x00010000, 0x00020003, 0x00040005, 0x00060007], '1:0:2:3:4:5:6:7'],
    [[0x00010000, 0x00000002, 0x00000000, 0x00030004], '1::2:0:0:3:4'],
    [[0x00010000, 0x00000002, 0, 0x00000003], '1:0:0:2::3'],
    [[0x20010db8, 0, 0, 0], '2001:db8::'],
    [[0xabcdef01, 0x23456789, 0xabcdef01, 0x23456789], 'abcd:ef01:2345:6789:abcd:ef01:2345:6789'],
  ])('formats %j as %j (RFC 5952)', (words, text) => {
    expect(formatIp({ family: 6, words: Uint32Array.from(words) })).toBe(text);
  });
});

describe('maskWords', () => {
  const ones = Uint32Array.of(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff);

  it.each([
    [0, [0, 0, 0, 0]],
    [1, [0x80000000, 0, 0, 0]],
    [31, [0xfffffffe, 0, 0, 0]],
    [32, [0xffffffff, 0, 0, 0]],
    [33, [0xffffffff, 0x80000000, 0, 0]],
    [127, [0xffffffff, 0xffffffff, 0xffffffff, 0xfffffffe]],
    [128, [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]],
  ])('keeps the first %i bits', (prefix, expected) => {
    expect(Array.from(maskWords(ones, prefix))).toEqual(expected);
  });

  it('does not modify its input', () => {
    const words = Uint32Array.of(0x0a010203);
    expect(Array.from(maskWords(words, 8))).toEqual([0x0a000000]);
    expect(Array.from(words)).toEqual([0x0a010203]);
  });
});

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', 4, [0x0a000000], 8],
    ['0.0.0.0/0', 4, [0], 0],
    ['192.0.2.1/32', 4, [0xc0000201], 32],
    [' 10.0.0.0/8 ', 4, [0x0a000000], 8],
    ['2001:db8::/32', 6, [0x20010db8, 0, 0, 0], 32],
    ['::/0', 6, [0, 0, 0, 0], 0],
    ['2001:db8::1/128', 6, [0x20010db8, 0, 0, 1], 128],
  ])('parses %j', (text, family, words, prefix) => {
    const cidr = parseCidr(text);
    expect({ family: cidr.family, words: Array.from(cidr.words), prefix: cidr.prefix }).toEqual({ family, words, prefix });
  });

  it.each([
    ['1.2.3.4', '1.2.3.4/32'],
    ['2001:db8::1', '2001:db8::1/128'],
    ['::ffff:1.2.3.4', '1.2.3.4/32'],
  ])('reads the bare address %j as the host route %j', (text, expected) => {
    expect(formatCidr(parseCidr(text))).toBe(expected);
  });

  it.each([
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
    ['::ffff:0:0/96', '0.0.0.0/0'],
    ['::ffff:192.0.2.0/120', '192.0.2.0/24'],
    ['::ffff:1.2.3.4/128', '1.2.3.4/32'],
  ])('turns the IPv4-mapped prefix %j into the IPv4 prefix %j', (text, expected) => {
    const cidr = parseCidr(text);
    expect(cidr.family).toBe(4);
    expect(formatCidr(cidr)).toBe(expected);
  });

  it('keeps an IPv6 prefix shorter than the mapped range as IPv6', () => {
    const cidr = parseCidr('::/80');
    expect(cidr.family).toBe(6);
    expect(formatCidr(cidr)).toBe('::/80');
  });

  it.each([
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['192.168.1.1/24', '192.168.1.0/24'],
    ['2001:db8::1/32', '2001:db8::/32'],
    ['0.0.0.1/0', '0.0.0.0/0'],
  ])('refuses %j, which has host bits set, and suggests %j', (text, suggestion) => {
    const err = thrown(() => parseCidr(text));
    expect(err.code).toBe('PCL_ERR_INVALID_CIDR');
    expect(err.message).toContain(`did you mean ${suggestion}?`);
    expect(err.details).toEqual({ input: text });
  });

  it.each([
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['2001:db8::1/32', '2001:db8::/32'],
    ['::ffff:10.1.2.3/104', '10.0.0.0/8'],
  ])('masks %j to %j with allowHostBits', (text, expected) => {
    expect(formatCidr(parseCidr(text, { allowHostBits: true }))).toBe(expected);
  });

  it.each([
    '10.0.0.0/33',
    '10.0.0.0/64',
    '::/129',
    '10.0.0.0/08',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    '10.0.0.0/1e1',
    '10.0.0.0/ 8',
    '/8',
    '',
    '010.0.0.0/8',
    '10.0.0/8',
    'fe80::%eth0/64',
    'kakao.com/32',
  ])('refuses %j with PCL_ERR_INVALID_CIDR', (text) => {
    expect(thrown(() => parseCidr(text)).code).toBe('PCL_ERR_INVALID_CIDR');
  });

  it('formats every parsed prefix so that it parses back to itself', () => {
    fc.assert(
      fc.property(groups, fc.integer({ min: 0, max: 128 }), (g, prefix) => {
        const words = maskWords(wordsOf(g), prefix);
        const cidr = parseCidr(`${formatIp({ family: 6, words })}/${prefix}`);
        expect(parseCidr(formatCidr(cidr))).toEqual(cidr);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('formatCidr', () => {
  it.each([
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['2001:0DB8:0:0::/32', '2001:db8::/32'],
    ['2001:db8:0:0:1:0:0:0/80', '2001:db8:0:0:1::/80'],
  ])('writes %j as %j', (text, expected) => {
    expect(formatCidr(parseCidr(text))).toBe(expected);
  });
});

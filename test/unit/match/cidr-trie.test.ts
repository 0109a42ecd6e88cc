import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { CidrTrie } from '../../../src/match/cidr-trie.js';
import { formatCidr, parseCidr, parseIp } from '../../../src/match/ip.js';

function trieOf(bits: 32 | 128, entries: Record<string, number>, initialNodes?: number): CidrTrie {
  const trie = new CidrTrie(bits, initialNodes);
  for (const [text, value] of Object.entries(entries)) {
    const cidr = parseCidr(text);
    trie.set(cidr.words, cidr.prefix, value);
  }
  return trie;
}

/** Every stored prefix containing the address, as [prefix length, value], shortest first. */
function matchesOf(trie: CidrTrie, address: string | Uint32Array): [number, number][] {
  const words = typeof address === 'string' ? parseIp(address)!.words : address;
  const values = new Int32Array(trie.bits + 1);
  const prefixes = new Uint8Array(trie.bits + 1);
  const count = trie.matches(words, values, prefixes);
  const out: [number, number][] = [];
  for (let i = 0; i < count; i++) out.push([prefixes[i]!, values[i]!]);
  return out;
}

function getOf(trie: CidrTrie, text: string): number {
  const cidr = parseCidr(text);
  return trie.get(cidr.words, cidr.prefix);
}

function listOf(trie: CidrTrie): string[] {
  const out: string[] = [];
  trie.forEach((words, prefix, value) => {
    out.push(`${formatCidr({ family: trie.bits === 32 ? 4 : 6, words, prefix })}=${value}`);
  });
  return out;
}

describe('CidrTrie', () => {
  it('starts empty', () => {
    const trie = new CidrTrie(32);
    expect(trie.size).toBe(0);
    expect(getOf(trie, '10.0.0.0/8')).toBe(-1);
    expect(getOf(trie, '0.0.0.0/0')).toBe(-1);
    expect(matchesOf(trie, '10.0.0.1')).toEqual([]);
    expect(listOf(trie)).toEqual([]);
  });

  describe('overlapping prefixes', () => {
    const trie = trieOf(32, { '10.0.0.0/8': 1, '10.1.0.0/16': 2, '10.1.2.0/24': 3 });

    it.each<[string, [number, number][]]>([
      ['10.1.2.3', [[8, 1], [16, 2], [24, 3]]],
      ['10.1.2.255', [[8, 1], [16, 2], [24, 3]]],
      ['10.1.3.1', [[8, 1], [16, 2]]],
      ['10.2.0.0', [[8, 1]]],
      ['10.255.255.255', [[8, 1]]],
      ['11.0.0.0', []],
      ['9.255.255.255', []],
    ])('reports every prefix holding %s, shortest first', (address, expected) => {
      expect(matchesOf(trie, address)).toEqual(expected);
    });

    it('finds only exact prefixes with get', () => {
      expect(getOf(trie, '10.0.0.0/8')).toBe(1);
      expect(getOf(trie, '10.1.0.0/16')).toBe(2);
      expect(getOf(trie, '10.1.2.0/24')).toBe(3);
      expect(getOf(trie, '10.0.0.0/9')).toBe(-1);
      expect(getOf(trie, '10.1.0.0/17')).toBe(-1);
      expect(getOf(trie, '10.1.2.0/25')).toBe(-1);
      expect(getOf(trie, '10.1.2.3/32')).toBe(-1);
      expect(getOf(trie, '0.0.0.0/0')).toBe(-1);
    });

    it('counts and lists each prefix once', () => {
      expect(trie.size).toBe(3);
      expect(listOf(trie)).toEqual(['10.0.0.0/8=1', '10.1.0.0/16=2', '10.1.2.0/24=3']);
    });
  });

  it('matches every address with /0 and only the host with /32', () => {
    const trie = trieOf(32, { '0.0.0.0/0': 7, '192.0.2.1/32': 9 });
    expect(matchesOf(trie, '192.0.2.1')).toEqual([[0, 7], [32, 9]]);
    expect(matchesOf(trie, '192.0.2.0')).toEqual([[0, 7]]);
    expect(matchesOf(trie, '0.0.0.0')).toEqual([[0, 7]]);
    expect(matchesOf(trie, '255.255.255.255')).toEqual([[0, 7]]);
    expect(getOf(trie, '192.0.2.1/32')).toBe(9);
  });

  it('matches IPv6 prefixes down to /128', () => {
    const trie = trieOf(128, { '::/0': 1, '2001:db8::/32': 2, '2001:db8::1/128': 3, '2001:db8:ffff::/48': 4 });
    expect(matchesOf(trie, '2001:db8::1')).toEqual([[0, 1], [32, 2], [128, 3]]);
    expect(matchesOf(trie, '2001:db8::2')).toEqual([[0, 1], [32, 2]]);
    expect(matchesOf(trie, '2001:db8:ffff:1::')).toEqual([[0, 1], [32, 2], [48, 4]]);
    expect(matchesOf(trie, '2001:db9::1')).toEqual([[0, 1]]);
    expect(getOf(trie, '2001:db8::1/128')).toBe(3);
    expect(getOf(trie, '2001:db8::/127')).toBe(-1);
    expect(listOf(trie)).toEqual(['::/0=1', '2001:db8::/32=2', '2001:db8::1/128=3', '2001:db8:ffff::/48=4']);
  });

  it('matches a /128 on its last bit only', () => {
    const trie = trieOf(128, { '::1/128': 5 });
    expect(matchesOf(trie, '::1')).toEqual([[128, 5]]);
    expect(matchesOf(trie, '::')).toEqual([]);
    expect(matchesOf(trie, '::3')).toEqual([]);
  });

  it('replaces the value at a prefix without counting it twice', () => {
    const trie = trieOf(32, { '10.0.0.0/8': 1 });
    const cidr = parseCidr('10.0.0.0/8');
    trie.set(cidr.words, cidr.prefix, 2);
    expect(trie.size).toBe(1);
    expect(getOf(trie, '10.0.0.0/8')).toBe(2);
    expect(matchesOf(trie, '10.9.9.9')).toEqual([[8, 2]]);
  });

  it('stores the value 0 like any other', () => {
    const trie = trieOf(32, { '10.0.0.0/8': 0, '0.0.0.0/0': 0 });
    expect(trie.size).toBe(2);
    expect(getOf(trie, '10.0.0.0/8')).toBe(0);
    expect(matchesOf(trie, '10.0.0.1')).toEqual([[0, 0], [8, 0]]);
  });

  it('reads only the first prefix bits of the words it is given', () => {
    const trie = new CidrTrie(32);
    const address = parseIp('10.1.2.3')!.words;
    trie.set(address, 8, 4);
    expect(getOf(trie, '10.0.0.0/8')).toBe(4);
    expect(trie.get(parseIp('10.200.0.1')!.words, 8)).toBe(4);
    expect(listOf(trie)).toEqual(['10.0.0.0/8=4']);
  });

  it('keeps every prefix while its node arrays grow from a single node', () => {
    const trie = new CidrTrie(128, 1);
    const texts = ['2001:db8::/32', '2001:db8::1/128', 'fe80::/10', '::/0', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/128'];
    texts.forEach((text, i) => {
      const cidr = parseCidr(text);
      trie.set(cidr.words, cidr.prefix, i);
    });
    expect(trie.size).toBe(texts.length);
    texts.forEach((text, i) => {
      expect(getOf(trie, text)).toBe(i);
    });
    expect(matchesOf(trie, '2001:db8::1')).toEqual([[0, 3], [32, 0], [128, 1]]);
  });

  describe.each([32, 128] as const)('against a brute-force reference (%i bits)', (bits) => {
    const wordCount = bits / 32;
    // Few distinct words, so random prefixes nest and share long paths; plus fully random ones.
    const word = fc.oneof(
      fc.constantFrom(0, 0xffffffff, 0x0a000000, 0x0a010203, 0x20010db8, 0x80000000),
      fc.integer({ min: 0, max: 0xffffffff }),
    );
    const address = fc.array(word, { minLength: wordCount, maxLength: wordCount }).map((w) => Uint32Array.from(w));
    const entry = fc.record({ words: address, prefix: fc.integer({ min: 0, max: bits }) });

    function toBig(words: Uint32Array): bigint {
      let out = 0n;
      for (const w of words) out = (out << 32n) | BigInt(w);
      return out;
    }

    /** Key of the prefix of `prefix` bits holding the address (bits past the prefix ignored). */
    function keyOf(big: bigint, prefix: number): string {
      return `${big >> BigInt(bits - prefix)}/${prefix}`;
    }

    it('agrees on get, matches, size and forEach after 10,000 inserts', () => {
      fc.assert(
        fc.property(
          fc.array(entry, { minLength: 10_000, maxLength: 10_000 }),
          fc.array(address, { minLength: 500, maxLength: 500 }),
          (entries, probes) => {
            const trie = new CidrTrie(bits);
            const reference = new Map<string, number>();
            entries.forEach(({ words, prefix }, value) => {
              trie.set(words, prefix, value);
              reference.set(keyOf(toBig(words), prefix), value);
            });

            expect(trie.size).toBe(reference.size);

            const expectedMatches = (words: Uint32Array): [number, number][] => {
              const big = toBig(words);
              const out: [number, number][] = [];
              for (let prefix = 0; prefix <= bits; prefix++) {
                const value = reference.get(keyOf(big, prefix));
                if (value !== undefined) out.push([prefix, value]);
              }
              return out;
            };

            for (const { words, prefix } of entries) {
              expect(trie.get(words, prefix)).toBe(reference.get(keyOf(toBig(words), prefix)));
              expect(matchesOf(trie, words)).toEqual(expectedMatches(words));
            }
            for (const words of probes) expect(matchesOf(trie, words)).toEqual(expectedMatches(words));

            const listed = new Map<string, number>();
            trie.forEach((words, prefix, value) => {
              const key = keyOf(toBig(words), prefix);
              expect(listed.has(key)).toBe(false);
              listed.set(key, value);
            });
            expect(listed).toEqual(reference);
          },
        ),
        { numRuns: 2, endOnFailure: true },
      );
    });
  });
});

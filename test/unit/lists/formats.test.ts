import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { countEntries, detectFormat, parseList, type ListFormat, type ParsedList } from '../../../src/lists/index.js';
import { formatCidr } from '../../../src/match/ip.js';

/** Parses with the given format and a no-op pause, so tests do not depend on setImmediate. */
function parse(text: string, format: ListFormat | 'auto', options: { maxEntries?: number; sliceLines?: number } = {}): Promise<ParsedList> {
  return parseList(text, format, { yieldEvery: () => Promise.resolve(), ...options });
}

function cidrsOf(list: ParsedList): string[] {
  return list.cidrs.map(formatCidr);
}

/** [line number, reason] pairs, the part of a skip report an operator acts on. */
function skipsOf(list: ParsedList): [number, string][] {
  return list.skipped.map((s) => [s.line, s.reason]);
}

describe('parseList: hosts', () => {
  it('takes every name after the address as an exact name, whatever the address', async () => {
    const list = await parse(
      ['0.0.0.0 ads.example.com', '127.0.0.1 track.example.net', ':: v6.example.org', '0.0.0.0\tone.example two.example  three.example'].join('\n'),
      'hosts',
    );
    expect(list.exact).toEqual(['ads.example.com', 'track.example.net', 'v6.example.org', 'one.example', 'two.example', 'three.example']);
    expect(list.suffix).toEqual([]);
    expect(list.skippedCount).toBe(0);
  });

  it('ignores whole-line and inline # comments', async () => {
    const list = await parse(
      ['# StevenBlack-style header', '0.0.0.0 ads.example.com # ad server', '0.0.0.0 other.example\t#tracker', '#0.0.0.0 disabled.example'].join('\n'),
      'hosts',
    );
    expect(list.exact).toEqual(['ads.example.com', 'other.example']);
    expect(list.skippedCount).toBe(0);
  });

  it('skips the names a hosts file carries for the machine itself, without reporting them', async () => {
    const list = await parse(
      [
        '127.0.0.1 localhost',
        '127.0.0.1 localhost.localdomain local',
        '255.255.255.255 broadcasthost',
        '::1 localhost ip6-localhost ip6-loopback',
        'fe80::1%lo0 localhost',
        'ff02::1 ip6-allnodes',
        '0.0.0.0 0.0.0.0',
        '0.0.0.0 LOCALHOST ads.example.com',
      ].join('\n'),
      'hosts',
    );
    expect(list.exact).toEqual(['ads.example.com']);
    expect(list.skippedCount).toBe(0);
  });

  it('normalises names (case, trailing dot, IDN)', async () => {
    const list = await parse('0.0.0.0 ADS.Example.COM.\n0.0.0.0 bücher.example\n', 'hosts');
    expect(list.exact).toEqual(['ads.example.com', 'xn--bcher-kva.example']);
  });

  it('reports a bad name and a line without a name with their line numbers', async () => {
    const list = await parse(['# header', '0.0.0.0 good.example', '0.0.0.0 bad..name', '', '0.0.0.0', 'not-an-address name.example'].join('\n'), 'hosts');
    expect(list.exact).toEqual(['good.example']);
    expect(list.skippedCount).toBe(3);
    expect(list.skipped).toEqual([
      { line: 3, text: '0.0.0.0 bad..name', reason: '"bad..name" is not a valid name' },
      { line: 5, text: '0.0.0.0', reason: 'expected "address name..."' },
      { line: 6, text: 'not-an-address name.example', reason: 'expected "address name..."' },
    ]);
  });

  it('reads Windows line endings and a byte-order mark', async () => {
    const list = await parse('\uFEFF0.0.0.0 a.example\r\n0.0.0.0 b.example\r\n', 'hosts');
    expect(list.exact).toEqual(['a.example', 'b.example']);
    expect(list.skippedCount).toBe(0);
  });
});

describe('parseList: domains', () => {
  it('takes each name as the name and its subdomains; *.name means the same', async () => {
    const list = await parse('kakao.com\n*.line.me\n', 'domains');
    expect(list.suffix).toEqual(['kakao.com', 'line.me']);
    expect(list.exact).toEqual([]);
  });

  it('normalises upper case, trailing dots and IDN to punycode', async () => {
    const list = await parse('KaKaO.CoM.\n*.BÜCHER.example\nмойдомен.рф\n', 'domains');
    expect(list.suffix).toEqual(['kakao.com', 'xn--bcher-kva.example', 'xn--d1acklchcc.xn--p1ai']);
    expect(list.skippedCount).toBe(0);
  });

  it('skips invalid lines, naming the line and why', async () => {
    const list = await parse(
      ['# comment', 'good.example # trailing comment', 'two names.example', '-bad.example', '1.2.3.4', 'a..b', '*.', 'x/y.example'].join('\n'),
      'domains',
    );
    expect(list.suffix).toEqual(['good.example']);
    expect(skipsOf(list)).toEqual([
      [3, 'expected one name per line'],
      [4, '"-bad.example" is not a valid name'],
      [5, '"1.2.3.4" is not a valid name'],
      [6, '"a..b" is not a valid name'],
      [7, '"*." is not a valid name'],
      [8, '"x/y.example" is not a valid name'],
    ]);
    expect(list.skippedCount).toBe(6);
  });
});

describe('parseList: adblock', () => {
  it('reads ||name^ as suffix, |name^ as exact and @@||name^ as an exception', async () => {
    const list = await parse(['||kakao.com^', '|talk.line.me^', '@@||safe.kakao.com^', '||plain.example', '||pipe.example^|'].join('\n'), 'adblock');
    expect(list.suffix).toEqual(['kakao.com', 'plain.example', 'pipe.example']);
    expect(list.exact).toEqual(['talk.line.me']);
    expect(list.allowSuffix).toEqual(['safe.kakao.com']);
    expect(list.skippedCount).toBe(0);
  });

  it('accepts modifiers that do not narrow the rule ($important)', async () => {
    const list = await parse('||a.example^$important\n@@||b.example^$important\n||c.example^$IMPORTANT,all\n', 'adblock');
    expect(list.suffix).toEqual(['a.example', 'c.example']);
    expect(list.allowSuffix).toEqual(['b.example']);
    expect(list.skippedCount).toBe(0);
  });

  it('skips rules whose modifiers cannot be judged on a name', async () => {
    const list = await parse('||a.example^$third-party\n||b.example^$domain=site.example\n||c.example^$important,third-party\n', 'adblock');
    expect(countEntries(list)).toBe(0);
    expect(skipsOf(list)).toEqual([
      [1, 'unsupported modifier "third-party"'],
      [2, 'unsupported modifier "domain=site.example"'],
      [3, 'unsupported modifier "third-party"'],
    ]);
  });

  it('skips path, wildcard, regex and cosmetic rules, and exact-name exceptions', async () => {
    const list = await parse(
      ['||ads.example/banner.js', '||*.example^', '/ads[0-9]+\\.example/', 'site.example##.ad-banner', 'site.example#@#.ad', '@@|exact.example^', '||ok.example^'].join(
        '\n',
      ),
      'adblock',
    );
    expect(list.suffix).toEqual(['ok.example']);
    expect(skipsOf(list)).toEqual([
      [1, 'rule with a path or wildcard'],
      [2, 'rule with a path or wildcard'],
      [3, 'regular expression rule'],
      [4, 'cosmetic rule'],
      [5, 'cosmetic rule'],
      [6, 'exact-name exceptions are not supported'],
    ]);
  });

  it('does not report the [Adblock Plus 2.0] header as a skipped rule; ! and # lines are comments', async () => {
    const list = await parse(['[Adblock Plus 2.0]', '! Title: test list', '! Expires: 1 day', '# hash comment', '||kakao.com^'].join('\n'), 'adblock');
    expect(list.suffix).toEqual(['kakao.com']);
    expect(list.skippedCount).toBe(0);
  });

  it('normalises names in rules', async () => {
    const list = await parse('||KAKAO.COM^\n||bücher.example^\n', 'adblock');
    expect(list.suffix).toEqual(['kakao.com', 'xn--bcher-kva.example']);
  });
});

describe('parseList: cidr', () => {
  it('reads IPv4 and IPv6 prefixes, and a bare address as a host route', async () => {
    const list = await parse(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1', '2001:db8::1', '203.0.113.0/24 # inline comment'].join('\n'), 'cidr');
    expect(cidrsOf(list)).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1/32', '2001:db8::1/128', '203.0.113.0/24']);
    expect(list.skippedCount).toBe(0);
  });

  it('skips prefixes with host bits set and other junk, with line numbers', async () => {
    const list = await parse(['10.0.0.1/8', '10.0.0.0/33', 'kakao.com', '1.2.3.4 5.6.7.8', '198.51.100.0/24'].join('\n'), 'cidr');
    expect(cidrsOf(list)).toEqual(['198.51.100.0/24']);
    expect(skipsOf(list)).toEqual([
      [1, '"10.0.0.1/8" is not a valid CIDR: host bits are set; did you mean 10.0.0.0/8?'],
      [2, '"10.0.0.0/33" is not a valid CIDR: prefix length is above 32'],
      [3, '"kakao.com" is not a valid CIDR: address is not a valid IPv4 or IPv6 address'],
      [4, 'expected one address or prefix per line'],
    ]);
  });
});

const HOSTS_SAMPLE = `# Title: StevenBlack/hosts
#
# This hosts file is a merged collection of hosts from reputable sources
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
255.255.255.255 broadcasthost
::1 localhost
0.0.0.0 0.0.0.0

# Start StevenBlack
0.0.0.0 talk.kakao.com
0.0.0.0 ads.example.net # ads
`;

const DOMAINS_SAMPLE = `# Messaging apps blocked by the school network
kakao.com
*.line.me
naver.jp
`;

const ADBLOCK_SAMPLE = `! Title: AdGuard DNS filter
! Homepage: https://example.org
! Last modified: 2024-01-01
||kakao.com^
@@||status.kakao.com^
||line.me^$important
`;

const ABP_SAMPLE = `[Adblock Plus 2.0]
! Title: EasyList-ish
||ads.example^
`;

const CIDR_SAMPLE = `# Kakao ranges (AS9764)
1.201.0.0/16
27.0.236.0/22
2001:db8::/32
203.0.113.7
`;

describe('detectFormat', () => {
  it.each<[string, string, ListFormat]>([
    ['a hosts file', HOSTS_SAMPLE, 'hosts'],
    ['a domains list', DOMAINS_SAMPLE, 'domains'],
    ['an AdGuard DNS filter', ADBLOCK_SAMPLE, 'adblock'],
    ['an Adblock Plus list with a header', ABP_SAMPLE, 'adblock'],
    ['a cidr list', CIDR_SAMPLE, 'cidr'],
    ['a cidr list of bare addresses with comments', '192.0.2.1 # one host\n198.51.100.2\n', 'cidr'],
    ['an IPv6-only hosts file', ':: ads.example\n:: track.example\n', 'hosts'],
    ['an empty file', '', 'domains'],
  ])('recognises %s', (_what, text, expected) => {
    expect(detectFormat(text)).toBe(expected);
  });

  it.each<[string, string, (l: ParsedList) => unknown, unknown]>([
    ['hosts', HOSTS_SAMPLE, (l) => l.exact, ['talk.kakao.com', 'ads.example.net']],
    ['domains', DOMAINS_SAMPLE, (l) => l.suffix, ['kakao.com', 'line.me', 'naver.jp']],
    ['adblock', ADBLOCK_SAMPLE, (l) => [l.suffix, l.allowSuffix], [['kakao.com', 'line.me'], ['status.kakao.com']]],
    ['cidr', CIDR_SAMPLE, cidrsOf, ['1.201.0.0/16', '27.0.236.0/22', '2001:db8::/32', '203.0.113.7/32']],
  ])('parseList(auto) reads a realistic %s sample completely', async (format, text, pick, expected) => {
    const list = await parse(text, 'auto');
    expect(list.format).toBe(format);
    expect(pick(list)).toEqual(expected);
    expect(list.skippedCount).toBe(0);
  });
});

describe('parseList: limits', () => {
  it('stops at maxEntries and reports the rest as skipped', async () => {
    const text = ['a.example', 'b.example', 'c.example', 'd.example', 'e.example'].join('\n');
    const list = await parse(text, 'domains', { maxEntries: 3 });
    expect(list.suffix).toEqual(['a.example', 'b.example', 'c.example']);
    expect(list.skippedCount).toBe(2);
    expect(skipsOf(list)).toEqual([
      [4, 'list holds more than 3 entries'],
      [5, 'list holds more than 3 entries'],
    ]);
  });

  it('counts every kind of entry towards maxEntries', async () => {
    const list = await parse('||a.example^\n|b.example^\n@@||c.example^\n||d.example^\n', 'adblock', { maxEntries: 3 });
    expect(countEntries(list)).toBe(3);
    expect(list.skippedCount).toBe(1);
  });

  it('a hosts line carrying many names cannot take the list past maxEntries', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `n${i}.example`);
    const list = await parse(`0.0.0.0 ${names.join(' ')}\n0.0.0.0 last.example\n`, 'hosts', { maxEntries: 10 });
    expect(countEntries(list)).toBe(10);
    expect(list.exact).toEqual(names.slice(0, 10));
    expect(skipsOf(list)).toEqual([
      [1, 'list holds more than 10 entries'],
      [2, 'list holds more than 10 entries'],
    ]);
  });

  it('keeps at most 20 skipped examples but counts them all', async () => {
    const lines = ['good.example'];
    for (let i = 0; i < 100; i++) lines.push(`bad name ${i}`);
    const list = await parse(lines.join('\n'), 'domains');
    expect(list.suffix).toEqual(['good.example']);
    expect(list.skippedCount).toBe(100);
    expect(list.skipped).toHaveLength(20);
    expect(list.skipped[0]).toEqual({ line: 2, text: 'bad name 0', reason: 'expected one name per line' });
    expect(list.skipped[19]!.line).toBe(21);
  });

  it('shortens the text of a very long skipped line in the report', async () => {
    const list = await parse(`${'x'.repeat(5000)} y`, 'domains');
    expect(list.skippedCount).toBe(1);
    expect(list.skipped[0]!.text).toHaveLength(200);
  });
});

describe('parseList: yielding', () => {
  it('pauses every sliceLines lines, blank and comment lines included', async () => {
    const pause = vi.fn(() => Promise.resolve());
    const text = Array.from({ length: 10 }, (_, i) => (i % 3 === 0 ? '# comment' : `n${i}.example`)).join('\n');
    const list = await parseList(text, 'domains', { sliceLines: 3, yieldEvery: pause });
    expect(pause).toHaveBeenCalledTimes(3);
    expect(list.suffix).toHaveLength(6);
  });

  it('lets other work run while a large list parses with the default pause', async () => {
    const text = Array.from({ length: 2000 }, (_, i) => `n${i}.example`).join('\n');
    let ranDuring = false;
    let done = false;
    const parsing = parseList(text, 'domains', { sliceLines: 100 }).then((list) => {
      done = true;
      return list;
    });
    setImmediate(() => {
      ranDuring = !done;
    });
    const list = await parsing;
    expect(ranDuring).toBe(true);
    expect(list.suffix).toHaveLength(2000);
  });
});

describe('parseList: properties', () => {
  /** Valid lower-case host names (fc.domain), none of them a hosts-file self name. */
  const names = fc.uniqueArray(
    fc.domain().filter((d) => d.length <= 253 && !d.startsWith('localhost')),
    { minLength: 1, maxLength: 20 },
  );

  it('a name written in any name format comes back as that name', async () => {
    await fc.assert(
      fc.asyncProperty(names, async (list) => {
        const domains = await parse(list.join('\n'), 'domains');
        const hosts = await parse(list.map((n) => `0.0.0.0 ${n}`).join('\n'), 'hosts');
        const adblock = await parse(list.map((n) => `||${n}^`).join('\n'), 'adblock');
        expect(domains.suffix).toEqual(list);
        expect(hosts.exact).toEqual(list);
        expect(adblock.suffix).toEqual(list);
        expect(domains.skippedCount + hosts.skippedCount + adblock.skippedCount).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('never throws on arbitrary text, and every skipped line number points at a non-empty line', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.constantFrom('||a.example^', '0.0.0.0 a.example', '10.0.0.0/8', '# c')), {
          maxLength: 30,
        }),
        fc.constantFrom<ListFormat | 'auto'>('auto', 'hosts', 'domains', 'adblock', 'cidr'),
        async (lines, format) => {
          const text = lines.join('\n');
          const list = await parse(text, format);
          const textLines = text.split('\n');
          expect(list.skipped.length).toBe(Math.min(list.skippedCount, 20));
          for (const s of list.skipped) {
            expect(s.line).toBeGreaterThanOrEqual(1);
            expect(s.line).toBeLessThanOrEqual(textLines.length);
            expect(textLines[s.line - 1]!.trim()).not.toBe('');
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PortcullisError } from '../../../../src/errors.js';
import { DialGuard, FORBIDDEN_NETWORKS } from '../../../../src/proxy/act/dial-guard.js';

/**
 * Every forbidden range, written out by hand (not derived from the module under test): its first
 * and last address, a word its reason must contain, and neighbours just outside that are public.
 */
const RANGES: readonly { cidr: string; first: string; last: string; reason: RegExp; outside?: readonly string[] }[] = [
  { cidr: '0.0.0.0/8', first: '0.0.0.0', last: '0.255.255.255', reason: /unspecified/i, outside: ['1.0.0.0'] },
  { cidr: '10.0.0.0/8', first: '10.0.0.0', last: '10.255.255.255', reason: /private/i, outside: ['9.255.255.255', '11.0.0.0'] },
  { cidr: '100.64.0.0/10', first: '100.64.0.0', last: '100.127.255.255', reason: /NAT/, outside: ['100.63.255.255', '100.128.0.0'] },
  { cidr: '127.0.0.0/8', first: '127.0.0.0', last: '127.255.255.255', reason: /loopback/i, outside: ['126.255.255.255', '128.0.0.0'] },
  { cidr: '169.254.0.0/16', first: '169.254.0.0', last: '169.254.255.255', reason: /link-local.*metadata/i, outside: ['169.253.255.255', '169.255.0.0'] },
  { cidr: '172.16.0.0/12', first: '172.16.0.0', last: '172.31.255.255', reason: /private/i, outside: ['172.15.255.255', '172.32.0.0'] },
  { cidr: '192.0.0.0/24', first: '192.0.0.0', last: '192.0.0.255', reason: /IETF protocol/i, outside: ['191.255.255.255', '192.0.1.0'] },
  { cidr: '192.0.2.0/24', first: '192.0.2.0', last: '192.0.2.255', reason: /documentation/i, outside: ['192.0.1.255', '192.0.3.0'] },
  { cidr: '192.168.0.0/16', first: '192.168.0.0', last: '192.168.255.255', reason: /private/i, outside: ['192.167.255.255', '192.169.0.0'] },
  { cidr: '198.18.0.0/15', first: '198.18.0.0', last: '198.19.255.255', reason: /benchmark/i, outside: ['198.17.255.255', '198.20.0.0'] },
  { cidr: '198.51.100.0/24', first: '198.51.100.0', last: '198.51.100.255', reason: /documentation/i, outside: ['198.51.99.255', '198.51.101.0'] },
  { cidr: '203.0.113.0/24', first: '203.0.113.0', last: '203.0.113.255', reason: /documentation/i, outside: ['203.0.112.255', '203.0.114.0'] },
  { cidr: '224.0.0.0/4', first: '224.0.0.0', last: '239.255.255.255', reason: /multicast/i, outside: ['223.255.255.255'] },
  // The last address of 240/4 is the limited broadcast, which has its own (longer) entry.
  { cidr: '240.0.0.0/4', first: '240.0.0.0', last: '255.255.255.254', reason: /reserved/i },
  { cidr: '255.255.255.255/32', first: '255.255.255.255', last: '255.255.255.255', reason: /broadcast/i },
  { cidr: '::/128', first: '::', last: '::', reason: /unspecified/i },
  { cidr: '::1/128', first: '::1', last: '::1', reason: /loopback/i },
  { cidr: '::/96', first: '::2', last: '::ffff:ffff', reason: /IPv4-compatible/i },
  { cidr: '64:ff9b:1::/48', first: '64:ff9b:1::', last: '64:ff9b:1:ffff:ffff:ffff:ffff:ffff', reason: /NAT64/, outside: ['64:ff9b:2::'] },
  { cidr: '100::/64', first: '100::', last: '100::ffff:ffff:ffff:ffff', reason: /discard/i },
  { cidr: '2001::/32', first: '2001::', last: '2001:0:ffff:ffff:ffff:ffff:ffff:ffff', reason: /Teredo/, outside: ['2001:1::'] },
  { cidr: '2001:db8::/32', first: '2001:db8::', last: '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', reason: /documentation/i, outside: ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db9::'] },
  { cidr: '3fff::/20', first: '3fff::', last: '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', reason: /documentation/i, outside: ['3fff:1000::'] },
  { cidr: 'fc00::/7', first: 'fc00::', last: 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', reason: /unique local/i, outside: ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fe00::'] },
  { cidr: 'fe80::/10', first: 'fe80::', last: 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', reason: /link-local/i, outside: ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff'] },
  { cidr: 'fec0::/10', first: 'fec0::', last: 'feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', reason: /site-local/i },
  { cidr: 'ff00::/8', first: 'ff00::', last: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', reason: /multicast/i },
];

const open = new DialGuard([]);

function refusal(guard: DialGuard, address: string): string {
  const verdict = guard.check(address);
  if (verdict.isAllowed) throw new Error(`${address} was allowed`);
  return verdict.reason;
}

describe('FORBIDDEN_NETWORKS', () => {
  it('lists exactly the ranges this test checks, each with a reason', () => {
    expect(FORBIDDEN_NETWORKS.map((n) => n.cidr).sort()).toEqual(RANGES.map((r) => r.cidr).sort());
    for (const network of FORBIDDEN_NETWORKS) expect(network.reason.length, network.cidr).toBeGreaterThan(3);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(FORBIDDEN_NETWORKS)).toBe(true);
    expect(Object.isFrozen(FORBIDDEN_NETWORKS[0])).toBe(true);
  });
});

describe('DialGuard.check: forbidden ranges', () => {
  it.each(RANGES)('$cidr is refused at its first and last address, naming the range', ({ cidr, first, last, reason }) => {
    for (const address of [first, last]) {
      const why = refusal(open, address);
      expect(why, address).toContain(cidr);
      expect(why, address).toMatch(reason);
    }
  });

  it.each(RANGES.filter((r) => r.outside !== undefined))('the public neighbours of $cidr are allowed', ({ outside }) => {
    for (const address of outside!) expect(open.check(address), address).toEqual({ isAllowed: true });
  });

  it('refuses the cloud metadata address and the usual loopback spellings', () => {
    expect(refusal(open, '169.254.169.254')).toMatch(/metadata/);
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '[::1]', '0.0.0.0', '::']) expect(open.check(address).isAllowed, address).toBe(false);
  });

  it('refuses addresses with an IPv6 zone id by their address', () => {
    expect(refusal(open, 'fe80::1%eth0')).toMatch(/link-local/);
  });
});

describe('DialGuard.check: IPv4 inside IPv6', () => {
  const forms: readonly [string, string, RegExp][] = [
    ['IPv4-mapped', '::ffff:127.0.0.1', /loopback/],
    ['IPv4-mapped, hex', '::ffff:7f00:1', /loopback/],
    ['IPv4-mapped, upper case, brackets', '[::FFFF:7F00:1]', /loopback/],
    ['IPv4-mapped', '::ffff:169.254.169.254', /metadata/],
    ['IPv4-mapped, hex', '::ffff:a9fe:a9fe', /metadata/],
    ['NAT64', '64:ff9b::127.0.0.1', /NAT64.*127\.0\.0\.1.*loopback/],
    ['NAT64, hex', '64:ff9b::7f00:1', /NAT64.*127\.0\.0\.1.*loopback/],
    ['NAT64', '64:ff9b::169.254.169.254', /NAT64.*169\.254\.169\.254.*metadata/],
    ['NAT64, hex', '64:ff9b::a9fe:a9fe', /NAT64.*169\.254\.169\.254.*metadata/],
    ['6to4', '2002:7f00:1::', /6to4.*127\.0\.0\.1.*loopback/],
    ['6to4, host part set', '2002:7f00:0001:abcd::1', /6to4.*127\.0\.0\.1.*loopback/],
    ['6to4', '2002:a9fe:a9fe::1', /6to4.*169\.254\.169\.254.*metadata/],
    ['6to4', '2002:a00:1::1', /6to4.*10\.0\.0\.1.*private/],
  ];

  it.each(forms)('%s %s is refused', (_form, address, reason) => {
    expect(refusal(open, address)).toMatch(reason);
  });

  it('allows NAT64 and 6to4 forms of public IPv4 addresses', () => {
    for (const address of ['64:ff9b::1.1.1.1', '64:ff9b::808:808', '2002:808:808::1', '::ffff:1.1.1.1']) expect(open.check(address), address).toEqual({ isAllowed: true });
  });

  it('refuses Teredo whatever it carries', () => {
    expect(refusal(open, '2001:0:4136:e378:8000:63bf:3fff:fdd2')).toMatch(/Teredo/);
  });
});

describe('DialGuard.check: public and malformed addresses', () => {
  it.each(['1.1.1.1', '8.8.8.8', '9.9.9.9', '2606:4700::1111', '2001:4860:4860::8888', '2a00:1450:4001:800::200e'])('allows %s', (address) => {
    expect(open.check(address)).toEqual({ isAllowed: true });
  });

  it.each(['', ' ', 'localhost', 'example.com', '127.1', '0x7f000001', '2130706433', '017.0.0.1', '127.0.0.1.', ' 127.0.0.1', '127.0.0.1:80', '1.1.1.1/32', '1.1.1.256', ':::1', '::ffff:127.0.0.1 ', 'fe80::1%', '[127.0.0.1', '\u0661.1.1.1'])(
    'refuses %j as not an IP address',
    (address) => {
      expect(open.check(address)).toEqual({ isAllowed: false, reason: 'not an IP address' });
      // An allow-list covering everything does not change that.
      expect(new DialGuard(['0.0.0.0/0', '::/0']).check(address).isAllowed).toBe(false);
    },
  );
});

describe('DialGuard.check: allow-list', () => {
  it('lets 127.0.0.1 through only when 127.0.0.0/8 is listed', () => {
    expect(open.check('127.0.0.1').isAllowed).toBe(false);
    const guard = new DialGuard(['127.0.0.0/8']);
    for (const address of ['127.0.0.1', '127.0.0.0', '127.255.255.255', '::ffff:127.0.0.1']) expect(guard.check(address), address).toEqual({ isAllowed: true });
  });

  it('lets through only the listed network', () => {
    const guard = new DialGuard(['127.0.0.0/8']);
    for (const address of ['10.0.0.1', '169.254.169.254', '192.168.1.1', '0.0.0.0', '::1', 'fc00::1', '100.64.0.1']) {
      expect(guard.check(address).isAllowed, address).toBe(false);
    }
    const host = new DialGuard(['127.0.0.1/32']);
    expect(host.check('127.0.0.1').isAllowed).toBe(true);
    expect(host.check('127.0.0.2').isAllowed).toBe(false);
    const v6 = new DialGuard(['::1/128']);
    expect(v6.check('::1').isAllowed).toBe(true);
    expect(v6.check('127.0.0.1').isAllowed).toBe(false);
  });

  it('lets through a private upstream network and its embedded forms, and nothing next to it', () => {
    const guard = new DialGuard(['10.1.0.0/16']);
    expect(guard.check('10.1.2.3').isAllowed).toBe(true);
    expect(guard.check('64:ff9b::a01:203').isAllowed).toBe(true);
    expect(guard.check('2002:a01:203::1').isAllowed).toBe(true);
    expect(guard.check('10.2.0.1').isAllowed).toBe(false);
    expect(guard.check('64:ff9b::a02:1').isAllowed).toBe(false);
  });

  it('refuses an invalid allow-list entry with PCL_ERR_INVALID_CIDR', () => {
    expect(() => new DialGuard(['127.0.0.1/8'])).toThrow(PortcullisError);
    expect(() => new DialGuard(['not-a-network'])).toThrow(expect.objectContaining({ code: 'PCL_ERR_INVALID_CIDR' }));
  });
});

describe('DialGuard.check: properties', () => {
  /** Reference model: each IPv4 range of the table as a closed numeric interval. */
  const toNumber = (v4: string): number => v4.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const v4Ranges = RANGES.filter((r) => !r.cidr.includes(':')).map((r) => {
    const [base, prefix] = r.cidr.split('/');
    const start = toNumber(base!);
    return [start, start + 2 ** (32 - Number(prefix)) - 1] as const;
  });
  const isForbiddenV4 = (n: number): boolean => v4Ranges.some(([lo, hi]) => n >= lo && n <= hi);
  const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  const hex = (n: number): string => `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  const v4 = fc.oneof(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.constantFrom(...v4Ranges.flatMap(([lo, hi]) => [lo, hi, Math.max(0, lo - 1), Math.min(0xffffffff, hi + 1)])),
  );

  it('an IPv4 address is allowed exactly when no forbidden range holds it, in every IPv6 form', () => {
    fc.assert(
      fc.property(v4, (n) => {
        const expected = !isForbiddenV4(n);
        const forms = [dotted(n), `::ffff:${dotted(n)}`, `::ffff:${hex(n)}`, `64:ff9b::${hex(n)}`, `2002:${hex(n)}::1`];
        for (const address of forms) expect(open.check(address).isAllowed, address).toBe(expected);
      }),
      { numRuns: 5_000 },
    );
  });
});

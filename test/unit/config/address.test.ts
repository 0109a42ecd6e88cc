import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isLoopbackHost, parseHostPort } from '../../../src/config/index.js';

describe('parseHostPort', () => {
  it('parses IPv4 host:port', () => {
    expect(parseHostPort('127.0.0.1:5353')).toEqual({ host: '127.0.0.1', port: 5353 });
  });

  it('parses [v6]:port and drops the brackets', () => {
    expect(parseHostPort('[::1]:53')).toEqual({ host: '::1', port: 53 });
    expect(parseHostPort('[2606:4700:4700::1111]:853')).toEqual({ host: '2606:4700:4700::1111', port: 853 });
  });

  it('parses name:port (whether a name is allowed is up to the caller)', () => {
    expect(parseHostPort('localhost:9090')).toEqual({ host: 'localhost', port: 9090 });
  });

  it('uses defaultPort only when no port is written', () => {
    expect(parseHostPort('1.1.1.1', { defaultPort: 53 })).toEqual({ host: '1.1.1.1', port: 53 });
    expect(parseHostPort('[2620:fe::fe]', { defaultPort: 53 })).toEqual({ host: '2620:fe::fe', port: 53 });
    expect(parseHostPort('1.1.1.1:5353', { defaultPort: 53 })).toEqual({ host: '1.1.1.1', port: 5353 });
  });

  it('accepts the port range bounds 1 and 65535', () => {
    expect(parseHostPort('10.0.0.1:1')).toEqual({ host: '10.0.0.1', port: 1 });
    expect(parseHostPort('10.0.0.1:65535')).toEqual({ host: '10.0.0.1', port: 65535 });
  });

  it.each([
    ['::1:53', 'write IPv6 addresses as [address]:port'],
    ['2606:4700::1111', 'write IPv6 addresses as [address]:port'],
    ['[::1', 'missing "]" after an IPv6 address'],
    ['[::1]53', 'expected ":port" after "]"'],
    ['[127.0.0.1]:53', '"127.0.0.1" is not an IPv6 address'],
    ['[]:53', '"" is not an IPv6 address'],
    [':53', 'host is empty'],
    ['127.0.0.1', 'expected host:port'],
    ['127.0.0.1:', 'port is not a number'],
    ['127.0.0.1:dns', 'port is not a number'],
    ['127.0.0.1:-1', 'port is not a number'],
    ['127.0.0.1:123456', 'port is not a number'],
    ['127.0.0.1:0', 'port must be 1-65535'],
    ['127.0.0.1:65536', 'port must be 1-65535'],
    ['127.0.0.1:70000', 'port must be 1-65535'],
  ])('returns a problem text for %s that quotes the input', (input, reason) => {
    expect(parseHostPort(input)).toBe(`"${input}": ${reason}`);
  });

  it('still requires brackets around IPv6 when a default port is given', () => {
    expect(parseHostPort('::1', { defaultPort: 53 })).toBe('"::1": write IPv6 addresses as [address]:port');
  });

  it('round-trips every IPv4 and bracketed IPv6 address with every valid port', () => {
    const address = fc.oneof(
      fc.ipV4().map((host) => ({ host, text: host })),
      fc.ipV6().map((host) => ({ host, text: `[${host}]` })),
    );
    fc.assert(
      fc.property(address, fc.integer({ min: 1, max: 65535 }), ({ host, text }, port) => {
        expect(parseHostPort(`${text}:${port}`)).toEqual({ host, port });
      }),
    );
  });

  it('never throws, and anything it accepts has a host and a port in 1-65535', () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.integer({ min: 0, max: 70000 }), { nil: undefined }), (text, defaultPort) => {
        const parsed = parseHostPort(text, defaultPort === undefined ? {} : { defaultPort });
        if (typeof parsed === 'string') return;
        expect(parsed.host).not.toBe('');
        if (parsed.port !== defaultPort) {
          expect(parsed.port).toBeGreaterThanOrEqual(1);
          expect(parsed.port).toBeLessThanOrEqual(65535);
        }
      }),
    );
  });
});

describe('isLoopbackHost', () => {
  it.each(['localhost', '::1', '127.0.0.1', '127.0.0.53', '127.255.255.254'])('treats %s as loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each(['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', '128.0.0.1', '1.127.0.0', 'fe80::1'])('treats %s as reachable from outside', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { parseUpstreamAddress } from '../../../src/config/upstream-address.js';

describe('parseUpstreamAddress', () => {
  it.each([
    ['1.1.1.1:53', { protocol: 'udp', host: '1.1.1.1', port: 53 }],
    ['1.1.1.1', { protocol: 'udp', host: '1.1.1.1', port: 53 }],
    ['[2606:4700:4700::1111]:5353', { protocol: 'udp', host: '2606:4700:4700::1111', port: 5353 }],
    ['tls://1.1.1.1#cloudflare-dns.com', { protocol: 'tls', host: '1.1.1.1', port: 853, name: 'cloudflare-dns.com' }],
    ['tls://9.9.9.9:8853#dns.quad9.net', { protocol: 'tls', host: '9.9.9.9', port: 8853, name: 'dns.quad9.net' }],
    ['tls://1.1.1.1', { protocol: 'tls', host: '1.1.1.1', port: 853, name: '1.1.1.1' }],
    ['TLS://[2620:fe::fe]:853#dns.quad9.net', { protocol: 'tls', host: '2620:fe::fe', port: 853, name: 'dns.quad9.net' }],
    ['https://8.8.8.8/dns-query#dns.google', { protocol: 'https', host: '8.8.8.8', port: 443, path: '/dns-query', name: 'dns.google' }],
    ['https://8.8.8.8#dns.google', { protocol: 'https', host: '8.8.8.8', port: 443, path: '/dns-query', name: 'dns.google' }],
    ['https://10.0.0.53:8443/resolve#dns.corp.example', { protocol: 'https', host: '10.0.0.53', port: 8443, path: '/resolve', name: 'dns.corp.example' }],
    ['https://[::1]/dns-query', { protocol: 'https', host: '::1', port: 443, path: '/dns-query', name: '::1' }],
  ])('%s', (text, expected) => {
    expect(parseUpstreamAddress(text)).toEqual({ ...expected, label: text });
  });

  it.each([
    ['dns.google:53', /must be an IP address/],
    ['tls://dns.google#dns.google', /must be an IP address/],
    ['https://dns.google/dns-query', /must be an IP address/],
    ['quic://1.1.1.1', /unknown scheme/],
    ['tls://1.1.1.1#not a name', /not a host name/],
    ['tls://1.1.1.1#', /not a host name/],
    ['tls://1.1.1.1/dns-query#x.example', /no path/],
    ['https://1.1.1.1/dns-query?dns={dns}#x.example', /not a plain URL path/],
    ['tls://1.1.1.1:99999#x.example', /port must be 1-65535/],
    ['::1:53', /\[address\]:port/],
  ])('refuses %s', (text, problem) => {
    const parsed = parseUpstreamAddress(text);
    expect(typeof parsed).toBe('string');
    expect(parsed).toMatch(problem);
  });
});

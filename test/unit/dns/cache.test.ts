import { describe, expect, it } from 'vitest';
import { AnswerCache, DEFAULT_CACHE_LIMITS, cacheKey, serveUncached, type CacheLimits } from '../../../src/dns/cache.js';
import { parseQuery, type Query } from '../../../src/dns/wire.js';
import { QNAME_PTR, T, aRdata, buildQuery, buildResponse, decode, rr, soaRdata, txtRdata, wireName, type QuerySpec } from '../../support/dns-message.js';

const T0 = 1_700_000_000_000;

function q(spec: QuerySpec): { buf: Buffer; query: Query } {
  const buf = buildQuery(spec);
  const parsed = parseQuery(buf);
  if (parsed.kind !== 'query') throw new Error(parsed.kind);
  return { buf, query: parsed.query };
}

function positive(name: string, ttls: { answer: number; authority?: number; additional?: number }, rcodeFlags = 0x8180): Buffer {
  return buildResponse({
    id: 0x7777,
    flags: rcodeFlags,
    name,
    qtype: T.A,
    answers: [rr(QNAME_PTR, T.A, ttls.answer, aRdata('192.0.2.1')), rr(QNAME_PTR, T.A, ttls.answer + 100, aRdata('192.0.2.2'))],
    authority: ttls.authority === undefined ? [] : [rr(wireName('example'), T.NS, ttls.authority, wireName('ns.example'))],
    additional: ttls.additional === undefined ? [] : [rr(wireName('ns.example'), T.A, ttls.additional, aRdata('192.0.2.53'))],
  });
}

function negative(name: string, rcode: 0 | 3, soa: { ttl: number; minimum: number }): Buffer {
  return buildResponse({
    flags: 0x8180 | rcode,
    name,
    qtype: T.A,
    authority: [rr(wireName('example'), T.SOA, soa.ttl, soaRdata(wireName('ns.example'), wireName('h.example'), { minimum: soa.minimum }))],
  });
}

function cache(limits: Partial<CacheLimits> = {}): AnswerCache {
  return new AnswerCache({ ...DEFAULT_CACHE_LIMITS, ...limits });
}

describe('cacheKey', () => {
  it('separates type, class, DO and CD; the name is already lower-case from the parser', () => {
    const base = q({ name: 'WWW.Example.com' }).query;
    expect(cacheKey(base, false)).toBe(cacheKey(q({ name: 'www.example.com' }).query, false));
    const keys = new Set([
      cacheKey(base, false),
      cacheKey(base, true),
      cacheKey(q({ name: 'www.example.com', qtype: T.AAAA }).query, false),
      cacheKey(q({ name: 'www.example.com', qclass: 3 }).query, false),
      cacheKey(q({ name: 'www.example.com', flags: 0x0110 }).query, false),
    ]);
    expect(keys.size).toBe(5);
  });
});

describe('AnswerCache: serving a hit', () => {
  it('patches the id, the question case, RD/CD, and keeps the rest', () => {
    const c = cache();
    const { buf, query } = q({ id: 0xabcd, flags: 0x0010, name: 'WwW.eXaMpLe.CoM' });
    expect(c.store(cacheKey(query, false), positive('www.example.com', { answer: 300 }), T0)).toBe(true);
    const out = decode(c.serve(c.lookup(cacheKey(query, false), T0)!, query, buf, T0, 'udp')!);
    expect(out).toMatchObject({ id: 0xabcd, qr: true, rd: false, cd: true, ra: true, rcode: 0, opt: null });
    expect(out.questions[0]?.name).toBe('WwW.eXaMpLe.CoM');
    // answers point at the question, so they come back in the client's case too
    expect(out.answers.map((a) => [a.name, a.value, a.ttl])).toEqual([
      ['WwW.eXaMpLe.CoM', '192.0.2.1', 300],
      ['WwW.eXaMpLe.CoM', '192.0.2.2', 400],
    ]);
  });

  it('adds our OPT (1232, DO echoed) when the client sent EDNS', () => {
    const c = cache();
    const { buf, query } = q({ name: 'a.example', edns: { udpSize: 4096, dnssecOk: true } });
    c.store('k', positive('a.example', { answer: 60 }), T0);
    const out = decode(c.serve(c.lookup('k', T0)!, query, buf, T0, 'udp')!);
    expect(out.opt).toEqual({ udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, options: [] });
    expect(out.answers).toHaveLength(2);
  });

  it('ages every TTL (answer, authority, additional) by whole seconds since storing', () => {
    const c = cache();
    const { buf, query } = q({ name: 'a.example' });
    c.store('k', positive('a.example', { answer: 300, authority: 1000, additional: 50 }), T0);
    const out = decode(c.serve(c.lookup('k', T0 + 10_900)!, query, buf, T0 + 10_900, 'tcp')!);
    expect(out.answers.map((a) => a.ttl)).toEqual([290, 390]);
    expect(out.authority[0]?.ttl).toBe(990);
    expect(out.additional[0]?.ttl).toBe(40);
  });

  it('is fresh until the smallest answer TTL passes, then stale (served with TTL 30), then gone', () => {
    const c = cache({ staleMaxSec: 100 });
    const { buf, query } = q({ name: 'a.example' });
    c.store('k', positive('a.example', { answer: 60 }), T0);
    expect(c.lookup('k', T0 + 59_999)?.isFresh).toBe(true);
    const stale = c.lookup('k', T0 + 60_000);
    expect(stale?.isFresh).toBe(false);
    const out = decode(c.serve(stale!, query, buf, T0 + 60_000, 'udp')!);
    expect(out.answers.map((a) => a.ttl)).toEqual([30, 30]);
    expect(DEFAULT_CACHE_LIMITS.staleAnswerTtlSec).toBe(30);
    expect(c.lookup('k', T0 + 159_999)?.isFresh).toBe(false);
    expect(c.lookup('k', T0 + 160_000)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('never modifies the stored buffer: serving many clients leaves it byte-identical', () => {
    const c = cache();
    const message = positive('a.example', { answer: 300, authority: 300 });
    c.store('k', message, T0);
    const entry = c.lookup('k', T0)!.entry;
    const snapshot = Buffer.from(entry.wire);
    const clients = [q({ id: 1, name: 'A.EXAMPLE' }), q({ id: 2, name: 'a.Example', flags: 0x0110, edns: { dnssecOk: true } }), q({ id: 3, name: 'a.example', edns: { udpSize: 512 } })];
    for (const [i, { buf, query }] of clients.entries()) {
      const out = c.serve(c.lookup('k', T0 + i * 5_000)!, query, buf, T0 + i * 5_000, 'udp')!;
      out.fill(0xff); // a listener scribbling on what it was handed must not reach the cache
    }
    c.serve(c.lookup('k', T0 + 400_000)!, clients[0]!.query, clients[0]!.buf, T0 + 400_000, 'udp');
    expect(entry.wire.equals(snapshot)).toBe(true);
    expect(entry.wire.readUInt16BE(0)).toBe(0);
  });

  it('copies the message on store: changing the caller buffer afterwards does not reach the cache', () => {
    const c = cache();
    const message = positive('a.example', { answer: 300 });
    c.store('k', message, T0);
    message.fill(0);
    const { buf, query } = q({ name: 'a.example' });
    expect(decode(c.serve(c.lookup('k', T0)!, query, buf, T0, 'udp')!).answers).toHaveLength(2);
  });

  it('answers too big for the client over UDP are truncated (TC), over TCP sent whole', () => {
    const c = cache();
    const big = buildResponse({ name: 'big.example', qtype: T.TXT, answers: Array.from({ length: 4 }, (_, i) => rr(QNAME_PTR, T.TXT, 300, txtRdata('x'.repeat(200) + String(i)))) });
    c.store('k', big, T0);
    const { buf, query } = q({ name: 'big.example', qtype: T.TXT });
    const udp = decode(c.serve(c.lookup('k', T0)!, query, buf, T0, 'udp')!);
    expect(udp.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    const tcp = decode(c.serve(c.lookup('k', T0)!, query, buf, T0, 'tcp')!);
    expect(tcp.tc).toBe(false);
    expect(tcp.answers).toHaveLength(4);
    const edns = q({ name: 'big.example', qtype: T.TXT, edns: { udpSize: 1232 } });
    expect(decode(c.serve(c.lookup('k', T0)!, edns.query, edns.buf, T0, 'udp')!).answers).toHaveLength(4);
  });

  it('returns null when the client question cannot be laid over the stored one', () => {
    const c = cache();
    c.store('k', positive('a.example', { answer: 300 }), T0);
    const longer = q({ name: 'aa.example' });
    expect(c.serve(c.lookup('k', T0)!, longer.query, longer.buf, T0, 'udp')).toBeNull();
  });

  it('serveUncached renders an upstream answer the same way without storing it', () => {
    const message = positive('a.example', { answer: 300 });
    const { buf, query } = q({ id: 4, name: 'A.example', edns: {} });
    const out = decode(serveUncached(message, 12 + 11 + 4, query, buf, 'udp')!);
    expect(out).toMatchObject({ id: 4, rcode: 0 });
    expect(out.questions[0]?.name).toBe('A.example');
    expect(out.opt?.udpSize).toBe(1232);
    expect(message.readUInt16BE(0)).toBe(0x7777);
  });
});

describe('AnswerCache: stale answers say so (RFC 8914)', () => {
  it('a stale answer carries EDE 3, a stale NXDOMAIN EDE 19, a fresh one none; without EDNS no OPT at all', () => {
    const c = cache({ staleMaxSec: 100 });
    c.store('a', positive('a.example', { answer: 60 }), T0);
    c.store('nx', negative('gone.example', 3, { ttl: 300, minimum: 120 }), T0);
    const withEdns = (name: string) => q({ name, edns: {} });
    const fresh = decode(c.serve(c.lookup('a', T0)!, withEdns('a.example').query, withEdns('a.example').buf, T0, 'udp')!);
    expect(fresh.ede).toBeNull();
    const stale = decode(c.serve(c.lookup('a', T0 + 60_000)!, withEdns('a.example').query, withEdns('a.example').buf, T0 + 60_000, 'udp')!);
    expect(stale.ede?.code).toBe(3);
    const staleNx = decode(c.serve(c.lookup('nx', T0 + 120_000)!, withEdns('gone.example').query, withEdns('gone.example').buf, T0 + 120_000, 'udp')!);
    expect(staleNx.rcode).toBe(3);
    expect(staleNx.ede?.code).toBe(19);
    const plain = q({ name: 'a.example' });
    const noEdns = decode(c.serve(c.lookup('a', T0 + 60_000)!, plain.query, plain.buf, T0 + 60_000, 'udp')!);
    expect(noEdns.ede).toBeNull();
    expect(noEdns.answers.length).toBeGreaterThan(0);
  });
});

describe('AnswerCache: what is stored, and for how long', () => {
  it('NXDOMAIN and NODATA live for min(SOA TTL, SOA minimum) (RFC 2308)', () => {
    const c = cache();
    expect(c.store('nx', negative('gone.example', 3, { ttl: 300, minimum: 120 }), T0)).toBe(true);
    expect(c.store('nodata', negative('a.example', 0, { ttl: 45, minimum: 600 }), T0)).toBe(true);
    expect(c.lookup('nx', T0 + 119_999)?.isFresh).toBe(true);
    expect(c.lookup('nx', T0 + 120_000)?.isFresh).toBe(false);
    expect(c.lookup('nodata', T0 + 44_999)?.isFresh).toBe(true);
    expect(c.lookup('nodata', T0 + 45_000)?.isFresh).toBe(false);
    const { buf, query } = q({ name: 'gone.example' });
    const out = decode(c.serve(c.lookup('nx', T0 + 20_000)!, query, buf, T0 + 20_000, 'udp')!);
    expect(out.rcode).toBe(3);
    expect(out.authority[0]?.ttl).toBe(280);
  });

  it('negative TTLs are capped by negativeMaxTtlSec', () => {
    const c = cache({ negativeMaxTtlSec: 10 });
    c.store('nx', negative('gone.example', 3, { ttl: 300, minimum: 300 }), T0);
    expect(c.lookup('nx', T0 + 10_000)?.isFresh).toBe(false);
  });

  it('negative answers without a SOA are not stored', () => {
    const c = cache();
    expect(c.store('nx', buildResponse({ flags: 0x8183, name: 'gone.example', qtype: T.A }), T0)).toBe(false);
    expect(c.lookup('nx', T0)).toBeUndefined();
  });

  it('SERVFAIL and REFUSED are not stored, even with a SOA', () => {
    const c = cache();
    for (const rcode of [2, 5]) {
      const msg = buildResponse({
        flags: 0x8180 | rcode,
        name: 'x.example',
        qtype: T.A,
        authority: [rr(wireName('example'), T.SOA, 300, soaRdata(wireName('ns'), wireName('h'), { minimum: 300 }))],
      });
      expect(c.store(`k${rcode}`, msg, T0)).toBe(false);
    }
    expect(c.size).toBe(0);
  });

  it('TTL 0 is not stored; TTLs are capped at maxTtlSec', () => {
    const c = cache({ maxTtlSec: 100 });
    expect(c.store('zero', positive('a.example', { answer: 0 }), T0)).toBe(false);
    expect(c.store('huge', positive('a.example', { answer: 1_000_000 }), T0)).toBe(true);
    expect(c.lookup('huge', T0 + 100_000)?.isFresh).toBe(false);
  });

  it('malformed messages are not stored', () => {
    const c = cache();
    const msg = positive('a.example', { answer: 60 });
    expect(c.store('k', msg.subarray(0, msg.length - 1), T0)).toBe(false);
  });

  it('is bounded by entries, least recently used first out', () => {
    const c = cache({ maxEntries: 3 });
    for (const k of ['a', 'b', 'c']) c.store(k, positive(`${k}.example`, { answer: 60 }), T0);
    c.lookup('a', T0); // a is now the most recent
    c.store('d', positive('d.example', { answer: 60 }), T0);
    expect(c.size).toBe(3);
    expect(c.lookup('b', T0)).toBeUndefined();
    expect(c.lookup('a', T0)).toBeDefined();
    expect(c.lookup('d', T0)).toBeDefined();
  });

  it('is bounded by bytes', () => {
    const maxBytes = 4_000;
    const c = cache({ maxBytes });
    const message = positive('a.example', { answer: 60 });
    for (let i = 0; i < 100; i++) c.store(`key-${i}`, message, T0);
    expect(c.bytes).toBeLessThanOrEqual(maxBytes);
    expect(c.size).toBeGreaterThan(5);
    expect(c.size).toBeLessThan(100);
    expect(c.lookup('key-99', T0)).toBeDefined();
    expect(c.lookup('key-0', T0)).toBeUndefined();
  });

  it('clear() empties it', () => {
    const c = cache();
    c.store('k', positive('a.example', { answer: 60 }), T0);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.bytes).toBe(0);
  });
});

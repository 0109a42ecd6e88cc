import fc from 'fast-check';
import { Packet } from 'dns2';
import { describe, expect, it } from 'vitest';
import { hasEch, prepareUpstreamAnswer } from '../../../src/dns/rewrite.js';
import { walkResponse } from '../../../src/dns/message.js';
import { QNAME_PTR, T, aRdata, aaaaRdata, buildResponse, content, decode, optRecord, ptr, rr, soaRdata, svcbRdata, u16, wireName, type DecodedRecord } from '../../support/dns-message.js';

const ALPN = { key: 1, value: Buffer.from([2, 0x68, 0x32, 2, 0x68, 0x33]) }; // h2, h3
const ECH = { key: 5, value: Buffer.alloc(64, 0xec) };
const IPV4HINT = { key: 4, value: aRdata('192.0.2.10') };

/** Appends parts and remembers where each starts, for writing pointers by hand. */
class Builder {
  private readonly parts: Buffer[] = [];
  private length = 0;

  add(part: Buffer): number {
    const at = this.length;
    this.parts.push(part);
    this.length += part.length;
    return at;
  }

  get offset(): number {
    return this.length;
  }

  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function header(counts: [number, number, number], flags = 0x8180): Buffer {
  return Buffer.concat([u16(0x1111), u16(flags), u16(1), u16(counts[0]), u16(counts[1]), u16(counts[2])]);
}

function prepare(msg: Buffer, stripEch = true): Buffer {
  const result = prepareUpstreamAnswer(msg, { stripEch });
  if (result === null) throw new Error('prepareUpstreamAnswer returned null');
  return result.message;
}

function withoutEch(records: DecodedRecord[]): ReturnType<typeof content> {
  return content(
    records.map((r) => {
      if (r.type !== T.HTTPS && r.type !== T.SVCB) return r;
      const v = r.value as { priority: number; target: string; params: { key: number; value: Buffer }[] };
      const rdata = svcbRdata(v.priority, v.target, v.params.filter((p) => p.key !== 5));
      return { ...r, rdata, rdataExpanded: rdata };
    }),
  );
}

/**
 * A message compressed the way real servers write it: owner names and RDATA names (MX, NS,
 * SOA, CNAME, SRV, PTR) point back into the question and into earlier RDATA.
 */
function compressedMessage(options: { ech: boolean; optInMiddle: boolean }): Buffer {
  const b = new Builder();
  b.add(header([4, 2, 3]));
  const qname = b.add(wireName('Example.COM'));
  b.add(Buffer.concat([u16(T.ANY), u16(1)]));
  // answers
  b.add(rr(ptr(qname), T.HTTPS, 300, svcbRdata(1, '.', options.ech ? [ALPN, ECH, IPV4HINT] : [ALPN, IPV4HINT])));
  const mxStart = b.offset;
  b.add(rr(ptr(qname), T.MX, 300, Buffer.concat([u16(10), Buffer.from([4, ...Buffer.from('mail')]), ptr(qname)])));
  const mailName = mxStart + 2 + 10 + 2; // owner pointer, fixed fields, preference
  const wwwStart = b.add(Buffer.concat([Buffer.from([3, ...Buffer.from('www')]), ptr(qname)]));
  b.add(Buffer.concat([u16(T.CNAME), u16(1), Buffer.from([0, 0, 0, 60]), u16(2), ptr(mailName)]));
  b.add(rr(Buffer.concat([Buffer.from([4, ...Buffer.from('_sip')]), ptr(qname)]), T.SRV, 120, Buffer.concat([u16(1), u16(2), u16(5060), ptr(wwwStart)])));
  // authority
  const nsStart = b.offset;
  b.add(rr(ptr(qname), T.NS, 3600, Buffer.concat([Buffer.from([3, ...Buffer.from('ns1')]), ptr(qname)])));
  const ns1Name = nsStart + 2 + 10;
  b.add(rr(ptr(qname), T.SOA, 3600, soaRdata(ptr(ns1Name), Buffer.concat([Buffer.from([10, ...Buffer.from('hostmaster')]), ptr(qname)]), { serial: 7, minimum: 300 })));
  // additional
  b.add(rr(ptr(mailName), T.A, 300, aRdata('192.0.2.25')));
  if (options.optInMiddle) b.add(optRecord({ udpSize: 1232 }));
  b.add(rr(ptr(ns1Name), T.AAAA, 300, aaaaRdata('2001:db8::53')));
  if (!options.optInMiddle) b.add(optRecord({ udpSize: 4096, dnssecOk: true }));
  return b.build();
}

describe('prepareUpstreamAnswer: the OPT record', () => {
  it('a message without OPT or ech comes back as an equal copy, not the same buffer', () => {
    const msg = buildResponse({ name: 'a.example', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 60, aRdata('192.0.2.1'))] });
    const result = prepareUpstreamAnswer(msg, { stripEch: true })!;
    expect(result.strippedEch).toBe(false);
    expect(result.message.equals(msg)).toBe(true);
    expect(result.message.buffer === msg.buffer && result.message.byteOffset === msg.byteOffset).toBe(false);
  });

  it('a trailing OPT is cut off and ARCOUNT decremented', () => {
    const plain = buildResponse({ name: 'a.example', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 60, aRdata('192.0.2.1'))] });
    const msg = buildResponse({ name: 'a.example', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 60, aRdata('192.0.2.1'))], additional: [optRecord({ dnssecOk: true })] });
    const out = prepare(msg);
    expect(out.equals(plain)).toBe(true);
    expect(decode(out).opt).toBeNull();
  });

  it('an OPT followed by other records: removed, everything else kept with names expanded', () => {
    const msg = compressedMessage({ ech: false, optInMiddle: true });
    const out = prepare(msg);
    const before = decode(msg);
    const after = decode(out);
    expect(after.opt).toBeNull();
    expect(out.readUInt16BE(10)).toBe(2);
    expect(content(after.answers)).toEqual(content(before.answers));
    expect(content(after.authority)).toEqual(content(before.authority));
    expect(content(after.additional)).toEqual(content(before.additional));
    expect(after.questions).toEqual(before.questions);
  });

  it('does not modify the upstream buffer', () => {
    const msg = compressedMessage({ ech: true, optInMiddle: true });
    const copy = Buffer.from(msg);
    prepare(msg);
    expect(msg.equals(copy)).toBe(true);
  });
});

describe('prepareUpstreamAnswer: HTTPS/SVCB ech', () => {
  it('removes the ech SvcParam (key 5) and keeps alpn and ipv4hint, in order', () => {
    const msg = buildResponse({ name: 'svc.example', qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 300, svcbRdata(1, '.', [ALPN, ECH, IPV4HINT]))] });
    expect(hasEch(msg, walkResponse(msg)!.records)).toBe(true);
    const result = prepareUpstreamAnswer(msg, { stripEch: true })!;
    expect(result.strippedEch).toBe(true);
    const answer = decode(result.message).answers[0]!;
    expect(answer.value).toEqual({ priority: 1, target: '.', params: [ALPN, IPV4HINT] });
    expect(answer.rdata.length).toBe(2 + 1 + (4 + 6) + (4 + 4));
    expect(hasEch(result.message, walkResponse(result.message)!.records)).toBe(false);
  });

  it('SVCB (type 64) too, with a target name', () => {
    const msg = buildResponse({ name: '_dns.resolver.arpa', qtype: T.SVCB, answers: [rr(QNAME_PTR, T.SVCB, 300, svcbRdata(1, 'dot.example.net', [ALPN, ECH]))] });
    const answer = decode(prepare(msg)).answers[0]!;
    expect(answer.value).toEqual({ priority: 1, target: 'dot.example.net', params: [ALPN] });
  });

  it('keeps ech when stripping is off', () => {
    const msg = buildResponse({ name: 'svc.example', qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 300, svcbRdata(1, '.', [ALPN, ECH]))] });
    const result = prepareUpstreamAnswer(msg, { stripEch: false })!;
    expect(result.strippedEch).toBe(false);
    expect(result.message.equals(msg)).toBe(true);
  });

  it('an HTTPS record without ech is copied unchanged', () => {
    const msg = buildResponse({ name: 'svc.example', qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 300, svcbRdata(1, '.', [ALPN, IPV4HINT]))] });
    expect(prepare(msg).equals(msg)).toBe(true);
  });

  it('a compressed message with ech: every other record survives, pointers expanded, and dns2 parses the result', () => {
    const msg = compressedMessage({ ech: true, optInMiddle: false });
    const out = prepare(msg);
    const before = decode(msg);
    const after = decode(out);
    // dig-equivalent content: same names, types, classes, TTLs and (expanded) RDATA, ech aside
    expect(content(after.answers)).toEqual(withoutEch(before.answers));
    expect(content(after.authority)).toEqual(content(before.authority));
    expect(content(after.additional)).toEqual(content(before.additional));
    expect(after.questions).toEqual([{ name: 'Example.COM', type: T.ANY, class: 1 }]);
    expect(after.answers.map((r) => r.value)).toEqual([
      { priority: 1, target: '.', params: [ALPN, IPV4HINT] },
      { preference: 10, exchange: 'mail.Example.COM' },
      'mail.Example.COM',
      { priority: 1, weight: 2, port: 5060, target: 'www.Example.COM' },
    ]);
    expect(after.authority[1]?.value).toMatchObject({ mname: 'ns1.Example.COM', rname: 'hostmaster.Example.COM', serial: 7, minimum: 300 });
    expect(after.additional.map((r) => [r.name, r.value])).toEqual([
      ['mail.Example.COM', '192.0.2.25'],
      ['ns1.Example.COM', '2001:db8:0:0:0:0:0:53'],
    ]);
    // header: counts updated, flags kept
    expect(out.readUInt16BE(2)).toBe(0x8180);
    expect([out.readUInt16BE(6), out.readUInt16BE(8), out.readUInt16BE(10)]).toEqual([4, 2, 2]);

    const parsed = Packet.parse(out);
    expect(parsed.answers.map((a) => [a.name, a.type])).toEqual([
      ['Example.COM', T.HTTPS],
      ['Example.COM', T.MX],
      ['www.Example.COM', T.CNAME],
      ['_sip.Example.COM', T.SRV],
    ]);
    expect(parsed.answers[1]?.exchange).toBe('mail.Example.COM');
    expect(parsed.answers[2]?.domain).toBe('mail.Example.COM');
    expect(parsed.answers[3]?.target).toBe('www.Example.COM');
    expect(parsed.authorities.map((a) => a.ns ?? a.primary)).toEqual(['ns1.Example.COM', 'ns1.Example.COM']);
    expect(parsed.additionals.map((a) => a.address)).toEqual(['192.0.2.25', '2001:db8::53']);
  });
});

describe('prepareUpstreamAnswer: malformed answers', () => {
  it('null for a message that does not walk', () => {
    const msg = buildResponse({ name: 'a.example', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 60, aRdata('192.0.2.1'))] });
    expect(prepareUpstreamAnswer(msg.subarray(0, msg.length - 2), { stripEch: true })).toBeNull();
  });

  it('null when a rebuild meets a forward pointer or a loop in a name', () => {
    const forward = buildResponse({
      name: 'a.example',
      qtype: T.CNAME,
      answers: [rr(QNAME_PTR, T.CNAME, 60, ptr(200)), rr(QNAME_PTR, T.HTTPS, 60, svcbRdata(1, '.', [ECH]))],
    });
    expect(prepareUpstreamAnswer(forward, { stripEch: true })).toBeNull();
    const selfLoop = Buffer.from(forward);
    // the CNAME RDATA pointer aimed at itself
    const rdStart = 12 + 11 + 4 + 12;
    selfLoop.writeUInt16BE(0xc000 | rdStart, rdStart);
    expect(prepareUpstreamAnswer(selfLoop, { stripEch: true })).toBeNull();
  });

  it('an SVCB record with a parameter running past its RDATA is left alone, not stripped', () => {
    const bad = Buffer.concat([u16(1), Buffer.from([0]), u16(5), u16(50), Buffer.alloc(4)]);
    const msg = buildResponse({ name: 'a.example', qtype: T.HTTPS, answers: [rr(QNAME_PTR, T.HTTPS, 60, bad)] });
    const result = prepareUpstreamAnswer(msg, { stripEch: true })!;
    expect(result.strippedEch).toBe(false);
    expect(result.message.equals(msg)).toBe(true);
  });

  it('null when an expanded name would exceed 255 octets', () => {
    const long = Buffer.concat(['a', 'b', 'c'].map((c) => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, c)])));
    const b = new Builder();
    b.add(header([2, 0, 0]));
    const qname = b.add(Buffer.concat([long, Buffer.from([0])])); // 193 octets
    b.add(Buffer.concat([u16(T.CNAME), u16(1)]));
    b.add(rr(ptr(qname), T.CNAME, 60, Buffer.concat([Buffer.from([62]), Buffer.alloc(62, 'x'), ptr(qname)]))); // 63 + 193 = 256
    b.add(rr(ptr(qname), T.HTTPS, 60, svcbRdata(1, '.', [ECH])));
    expect(prepareUpstreamAnswer(b.build(), { stripEch: true })).toBeNull();
  });
});

describe('properties', () => {
  it('never throws on any bytes; whatever it returns walks as a message without OPT', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const result = prepareUpstreamAnswer(Buffer.from(bytes), { stripEch: true });
        if (result !== null) expect(walkResponse(result.message)?.records.some((r) => r.type === T.OPT)).toBe(false);
      }),
      { numRuns: 3000 },
    );
  });

  it('a compressed message with bytes changed: null, or a well-formed message with no OPT and no ech', () => {
    const base = compressedMessage({ ech: true, optInMiddle: true });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), (changes) => {
        const msg = Buffer.from(base);
        for (const [at, value] of changes) msg[at] = value;
        const result = prepareUpstreamAnswer(msg, { stripEch: true });
        if (result === null) return;
        const walked = walkResponse(result.message);
        expect(walked).not.toBeNull();
        expect(walked!.records.some((r) => r.type === T.OPT)).toBe(false);
        expect(hasEch(result.message, walked!.records)).toBe(false);
      }),
      { numRuns: 3000 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { OUR_UDP_SIZE, answerTargets, buildAnswer, buildOpt, maxUdpResponse, responseRcode, truncateForUdp, walkResponse } from '../../../src/dns/message.js';
import { RCODE, parseQuery, type Query } from '../../../src/dns/wire.js';
import { QNAME_PTR, T, aRdata, aaaaRdata, buildQuery, buildResponse, decode, optRecord, ptr, rr, soaRdata, wireName } from '../../support/dns-message.js';

function query(buf: Buffer): Query {
  const parsed = parseQuery(buf);
  if (parsed.kind !== 'query') throw new Error(parsed.kind);
  return parsed.query;
}

describe('walkResponse', () => {
  it('lists every record with its section, type, TTL and RDATA offsets', () => {
    const msg = buildResponse({
      name: 'www.example.com',
      qtype: T.A,
      answers: [rr(QNAME_PTR, T.CNAME, 300, wireName('edge.example.net')), rr(wireName('edge.example.net'), T.A, 60, aRdata('192.0.2.7'))],
      authority: [rr(wireName('example.net'), T.SOA, 900, soaRdata(wireName('ns.example.net'), wireName('h.example.net'), { minimum: 30 }))],
      additional: [optRecord()],
    });
    const walked = walkResponse(msg);
    expect(walked?.questionEnd).toBe(12 + 17 + 4);
    expect(walked?.records.map((r) => [r.section, r.type, r.ttl])).toEqual([
      ['answer', T.CNAME, 300],
      ['answer', T.A, 60],
      ['authority', T.SOA, 900],
      ['additional', T.OPT, 0],
    ]);
    const a = walked!.records[1]!;
    expect([...msg.subarray(a.rdStart, a.rdEnd)]).toEqual([192, 0, 2, 7]);
    expect(msg.readUInt32BE(a.ttlOffset)).toBe(60);
  });

  it('is null for malformed messages: qdcount not 1, a record cut short, a missing record, trailing bytes', () => {
    const ok = buildResponse({ name: 'a.example', qtype: T.A, answers: [rr(QNAME_PTR, T.A, 60, aRdata('192.0.2.1'))] });
    expect(walkResponse(ok)).not.toBeNull();
    const noQuestion = Buffer.from(ok);
    noQuestion.writeUInt16BE(0, 4);
    expect(walkResponse(noQuestion)).toBeNull();
    expect(walkResponse(ok.subarray(0, ok.length - 1))).toBeNull();
    const extra = Buffer.from(ok);
    extra.writeUInt16BE(2, 6);
    expect(walkResponse(extra)).toBeNull();
    expect(walkResponse(Buffer.concat([ok, Buffer.from([0])]))).toBeNull();
    expect(walkResponse(Buffer.alloc(5))).toBeNull();
  });
});

describe('buildOpt', () => {
  it('advertises 1232, echoes DO, version 0', () => {
    const opt = decode(buildAnswer(buildQuery({ edns: { udpSize: 4096, dnssecOk: true } }), 1, 0x0100, 0, null, { udpSize: 4096, version: 0, dnssecOk: true })).opt;
    expect(opt).toEqual({ udpSize: OUR_UDP_SIZE, extendedRcode: 0, version: 0, dnssecOk: true, options: [] });
  });

  it('carries an Extended DNS Error and the upper rcode bits', () => {
    const bytes = buildOpt({ udpSize: 512, version: 0, dnssecOk: false }, { extendedRcode: RCODE.BADVERS, ede: { code: 15, text: 'kakaotalk' } });
    expect(bytes[0]).toBe(0);
    expect(bytes.readUInt16BE(1)).toBe(T.OPT);
    expect(bytes[5]).toBe(1); // 16 >> 4
    expect(bytes.readUInt16BE(9)).toBe(4 + 2 + 9);
    expect(bytes.readUInt16BE(11)).toBe(15);
    expect(bytes.readUInt16BE(15)).toBe(15);
    expect(bytes.subarray(17).toString()).toBe('kakaotalk');
  });
});

describe('buildAnswer', () => {
  it('copies the question as sent (0x20 case), sets QR RA, keeps opcode RD CD, and the id', () => {
    const buf = buildQuery({ id: 99, flags: 0x0110, name: 'WwW.ExAmPlE.cOm', qtype: T.MX });
    const q = query(buf);
    const out = decode(buildAnswer(buf, q.id, q.flags, RCODE.NXDOMAIN, q.questionEnd, q.edns));
    expect(out).toMatchObject({ id: 99, qr: true, ra: true, rd: true, cd: true, aa: false, tc: false, opcode: 0, rcode: RCODE.NXDOMAIN, opt: null });
    expect(out.questions).toEqual([{ name: 'WwW.ExAmPlE.cOm', type: T.MX, class: 1 }]);
  });

  it('without a question (FORMERR for qdcount 0) has qdcount 0', () => {
    const out = decode(buildAnswer(buildQuery({ noQuestion: true }), 5, 0, RCODE.FORMERR, null, null));
    expect(out.questions).toEqual([]);
    expect(out.rcode).toBe(RCODE.FORMERR);
  });

  it('BADVERS splits 16 into the header (0) and the OPT (1)', () => {
    const buf = buildQuery({ edns: { version: 1 } });
    const out = buildAnswer(buf, 1, 0x0100, RCODE.BADVERS, 12 + 13 + 4, { udpSize: 1232, version: 1, dnssecOk: false });
    expect(out[3]! & 0xf).toBe(0);
    const d = decode(out);
    expect(d.rcode).toBe(16);
    expect(d.opt?.version).toBe(0);
  });

  it('places answers and authority after the question', () => {
    const buf = buildQuery({ name: 'x.example', edns: {} });
    const q = query(buf);
    const out = decode(
      buildAnswer(buf, q.id, q.flags, 0, q.questionEnd, q.edns, {
        answers: { count: 1, bytes: rr(QNAME_PTR, T.A, 5, aRdata('192.0.2.9')) },
        authority: { count: 1, bytes: rr(QNAME_PTR, T.SOA, 5, soaRdata(wireName('a'), wireName('b'), { minimum: 5 })) },
        ede: { code: 15, text: 'line' },
      }),
    );
    expect(out.answers.map((r) => [r.name, r.value])).toEqual([['x.example', '192.0.2.9']]);
    expect(out.authority[0]?.type).toBe(T.SOA);
    expect(out.ede).toEqual({ code: 15, text: 'line' });
  });
});

describe('truncateForUdp and maxUdpResponse', () => {
  it('512 without EDNS; the client size up to 1232 with it', () => {
    expect(maxUdpResponse(null)).toBe(512);
    expect(maxUdpResponse({ udpSize: 600, version: 0, dnssecOk: false })).toBe(600);
    expect(maxUdpResponse({ udpSize: 4096, version: 0, dnssecOk: false })).toBe(1232);
  });

  it('keeps header, question and OPT, sets TC, drops every record, keeps the rcode', () => {
    for (const edns of [null, {}] as const) {
      const buf = buildQuery({ name: 'Big.Example', qtype: T.TXT, edns });
      const q = query(buf);
      const big = buildResponse({ name: 'big.example', qtype: T.TXT, answers: [rr(QNAME_PTR, T.TXT, 60, Buffer.alloc(700, 1))] });
      const out = decode(truncateForUdp(big, q, buf));
      expect(out.tc).toBe(true);
      expect(out.answers).toEqual([]);
      expect(out.questions[0]?.name).toBe('Big.Example');
      expect(out.opt === null).toBe(edns === null);
      expect(responseRcode(big)).toBe(0);
    }
  });
});

describe('answerTargets', () => {
  it('collects CNAME targets (pointers followed) and A/AAAA addresses of the answer section only', () => {
    const msg = buildResponse({
      name: 'www.example.com',
      qtype: T.A,
      answers: [
        rr(QNAME_PTR, T.CNAME, 60, Buffer.concat([Buffer.from([4, ...Buffer.from('Edge')]), ptr(16)])),
        rr(wireName('edge.example.com'), T.A, 60, aRdata('147.92.150.1')),
        rr(wireName('edge.example.com'), T.AAAA, 60, aaaaRdata('2400:dcc0::1')),
        rr(wireName('edge.example.com'), T.A, 60, Buffer.alloc(3)), // wrong length: ignored
      ],
      additional: [rr(wireName('ns.example.com'), T.A, 60, aRdata('192.0.2.1'))],
    });
    const walked = walkResponse(msg)!;
    expect(answerTargets(msg, walked.records)).toEqual({ cnames: ['edge.example.com'], addresses: ['147.92.150.1', '2400:dcc0:0:0:0:0:0:1'] });
  });
});

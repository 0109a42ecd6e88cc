import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RCODE, TYPE, encodeName, parseQuery, readName, skipName, skipRecord, typeName, type QueryParse } from '../../../src/dns/wire.js';
import { QNAME_PTR, T, aRdata, buildQuery, optRecord, ptr, rr, u16, wireLabels, wireName } from '../../support/dns-message.js';

function asQuery(parsed: QueryParse): Extract<QueryParse, { kind: 'query' }>['query'] {
  if (parsed.kind !== 'query') throw new Error(`expected a query, got ${JSON.stringify(parsed)}`);
  return parsed.query;
}

function asError(parsed: QueryParse): Extract<QueryParse, { kind: 'error' }> {
  if (parsed.kind !== 'error') throw new Error(`expected an error, got ${parsed.kind}`);
  return parsed;
}

describe('parseQuery: well-formed queries', () => {
  it('reads id, flags, question and the end of the question', () => {
    const buf = buildQuery({ id: 0xbeef, flags: 0x0110, name: 'www.example.com', qtype: T.AAAA });
    const q = asQuery(parseQuery(buf));
    expect(q).toEqual({ id: 0xbeef, flags: 0x0110, qname: 'www.example.com', qtype: T.AAAA, qclass: 1, questionEnd: 12 + 17 + 4, isQnameCompressed: false, edns: null });
  });

  it('lower-cases a 0x20 mixed-case name (the bytes in the buffer are left as sent)', () => {
    const buf = buildQuery({ name: 'TaLk-PiLsNeR.KaKaO.CoM' });
    const before = Buffer.from(buf);
    expect(asQuery(parseQuery(buf)).qname).toBe('talk-pilsner.kakao.com');
    expect(buf.equals(before)).toBe(true);
  });

  it('reads the root name as the empty string', () => {
    expect(asQuery(parseQuery(buildQuery({ name: '', qtype: T.NS }))).qname).toBe('');
  });

  it('escapes a "." or "\\" inside a label, so a.b|example and a|b|example differ', () => {
    const dotted = asQuery(parseQuery(buildQuery({ nameWire: wireLabels(['a.b', 'example']) }))).qname;
    const plain = asQuery(parseQuery(buildQuery({ nameWire: wireLabels(['a', 'b', 'example']) }))).qname;
    expect(dotted).toBe('a\\.b.example');
    expect(plain).toBe('a.b.example');
    expect(asQuery(parseQuery(buildQuery({ nameWire: wireLabels(['a\\b', 'example']) }))).qname).toBe('a\\\\b.example');
  });

  it('reads EDNS: UDP size, version, DO; a size below 512 counts as 512', () => {
    expect(asQuery(parseQuery(buildQuery({ edns: { udpSize: 4096, dnssecOk: true } }))).edns).toEqual({ udpSize: 4096, version: 0, dnssecOk: true });
    expect(asQuery(parseQuery(buildQuery({ edns: { udpSize: 100 } }))).edns).toEqual({ udpSize: 512, version: 0, dnssecOk: false });
  });

  it('accepts well-formed EDNS options (a cookie, an empty option)', () => {
    const q = asQuery(parseQuery(buildQuery({ edns: { options: [{ code: 10, data: Buffer.alloc(8, 7) }, { code: 12, data: Buffer.alloc(0) }] } })));
    expect(q.edns).not.toBeNull();
  });

  it('skips answer and authority records a query may carry, and non-OPT additionals', () => {
    const q = parseQuery(
      buildQuery({
        answers: [rr(QNAME_PTR, T.A, 1, aRdata('192.0.2.1'))],
        authority: [rr(QNAME_PTR, T.A, 1, aRdata('192.0.2.2'))],
        additional: [rr(wireName('x.example'), T.A, 1, aRdata('192.0.2.3'))],
        edns: {},
      }),
    );
    expect(asQuery(q).edns).toEqual({ udpSize: 1232, version: 0, dnssecOk: false });
  });

  it('accepts a name of exactly 255 octets on the wire, refuses 256', () => {
    const labels = (last: number): string[] => ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(last)];
    expect(wireLabels(labels(61)).length).toBe(255);
    expect(asQuery(parseQuery(buildQuery({ nameWire: wireLabels(labels(61)) }))).qname).toHaveLength(253);
    expect(wireLabels(labels(62)).length).toBe(256);
    expect(asError(parseQuery(buildQuery({ nameWire: wireLabels(labels(62)) }))).rcode).toBe(RCODE.FORMERR);
  });
});

describe('parseQuery: dropped packets (no answer at all)', () => {
  it.each([0, 1, 11])('a packet of %i bytes is dropped', (n) => {
    expect(parseQuery(Buffer.alloc(n))).toEqual({ kind: 'drop', reason: 'short' });
  });

  it('a response (QR=1) is dropped, whatever follows', () => {
    expect(parseQuery(buildQuery({ flags: 0x8180 }))).toEqual({ kind: 'drop', reason: 'response' });
    expect(parseQuery(Buffer.from([0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toEqual({ kind: 'drop', reason: 'response' });
  });
});

describe('parseQuery: FORMERR, BADVERS, NOTIMP', () => {
  const formerr = (buf: Buffer, reason: string): Extract<QueryParse, { kind: 'error' }> => {
    const e = asError(parseQuery(buf));
    expect(e.rcode).toBe(RCODE.FORMERR);
    expect(e.reason).toBe(reason);
    return e;
  };

  it('qdcount 0 and 2: FORMERR without a question, id and flags kept', () => {
    const zero = formerr(buildQuery({ id: 7, noQuestion: true }), 'qdcount');
    expect(zero).toMatchObject({ id: 7, flags: 0x0100, question: null, edns: null });
    formerr(buildQuery({ qdcount: 2 }), 'qdcount');
    // two real questions
    const two = Buffer.concat([buildQuery({ qdcount: 2 }), wireName('b.example'), u16(1), u16(1)]);
    formerr(two, 'qdcount');
  });

  it('a truncated question: name cut, type cut, class cut', () => {
    const full = buildQuery({ name: 'www.example.com' });
    formerr(full.subarray(0, 12 + 5), 'question');
    formerr(full.subarray(0, full.length - 3), 'question');
    formerr(full.subarray(0, full.length - 1), 'question');
    formerr(buildQuery({ nameWire: Buffer.from([3, 0x61, 0x62]) }).subarray(0, 15), 'question');
  });

  it('compression loops and forward pointers', () => {
    // a pointer to itself
    formerr(buildQuery({ nameWire: ptr(12) }), 'question');
    // a label then a pointer back to the start of the name
    formerr(buildQuery({ nameWire: Buffer.concat([Buffer.from([1, 0x61]), ptr(12)]) }), 'question');
    // a forward pointer (to the qtype bytes after the name)
    formerr(buildQuery({ nameWire: ptr(14) }), 'question');
    // a pointer past the end
    formerr(buildQuery({ nameWire: ptr(0x3fff) }), 'question');
    // a pointer cut in half
    formerr(Buffer.concat([buildQuery({ noQuestion: true, qdcount: 1 }), Buffer.from([0xc0])]), 'question');
  });

  it('a name longer than 255 octets', () => {
    formerr(buildQuery({ nameWire: wireLabels(Array.from({ length: 5 }, () => 'x'.repeat(63))) }), 'question');
  });

  it('reserved label types 0x40 and 0x80', () => {
    formerr(buildQuery({ nameWire: Buffer.from([0x41, 0x61, 0]) }), 'question');
    formerr(buildQuery({ nameWire: Buffer.from([0x81, 0x61, 0]) }), 'question');
    formerr(buildQuery({ nameWire: Buffer.concat([wireLabels(['ok']).subarray(0, 3), Buffer.from([0x40, 0])]) }), 'question');
  });

  it('two OPT records', () => {
    const e = formerr(buildQuery({ additional: [optRecord()], edns: {} }), 'two-opt');
    expect(e.question?.qname).toBe('example.com');
  });

  it('an OPT whose owner is not the root', () => {
    formerr(buildQuery({ edns: { owner: wireName('example') } }), 'opt-owner');
    formerr(buildQuery({ edns: { owner: QNAME_PTR } }), 'opt-owner');
  });

  it('malformed OPT options: an option running past the RDATA, a partial option header', () => {
    formerr(buildQuery({ edns: { rawOptions: Buffer.concat([u16(10), u16(9), Buffer.alloc(8)]) } }), 'opt-options');
    formerr(buildQuery({ edns: { rawOptions: Buffer.from([0, 10, 0]) } }), 'opt-options');
  });

  it('an OPT whose RDLENGTH runs past the message', () => {
    const buf = buildQuery({ edns: { options: [{ code: 10, data: Buffer.alloc(8) }] } });
    formerr(buf.subarray(0, buf.length - 2), 'record');
  });

  it('records announced in the header that are not there', () => {
    const buf = buildQuery({});
    buf.writeUInt16BE(1, 6);
    formerr(buf, 'record');
    const ar = buildQuery({});
    ar.writeUInt16BE(1, 10);
    formerr(ar, 'record');
  });

  it('trailing garbage after the last record', () => {
    formerr(buildQuery({ trailing: Buffer.from([0]) }), 'trailing');
    const e = formerr(buildQuery({ edns: { dnssecOk: true }, trailing: Buffer.from('junk') }), 'trailing');
    expect(e.edns).toEqual({ udpSize: 1232, version: 0, dnssecOk: true });
  });

  it('EDNS version 1: BADVERS (16), with question and EDNS so the answer can carry both', () => {
    const e = asError(parseQuery(buildQuery({ edns: { version: 1 } })));
    expect(e.rcode).toBe(RCODE.BADVERS);
    expect(e.rcode).toBe(16);
    expect(e.edns).toMatchObject({ version: 1 });
    expect(e.question).toEqual({ qname: 'example.com', qtype: 1, qclass: 1, end: 12 + 13 + 4 });
  });

  it('opcode 2 (STATUS) and 5 (UPDATE): NOTIMP with the question', () => {
    for (const opcode of [2, 5]) {
      const e = asError(parseQuery(buildQuery({ flags: (opcode << 11) | 0x0100 })));
      expect(e.rcode).toBe(RCODE.NOTIMP);
      expect(e.question?.qname).toBe('example.com');
    }
  });
});

describe('readName, skipName, skipRecord', () => {
  it('follows a backward pointer and reports where the name ends in place', () => {
    const buf = Buffer.concat([Buffer.alloc(12), wireName('Example.COM'), Buffer.from([3, 0x77, 0x77, 0x77]), ptr(12)]);
    const at = 12 + 13;
    expect(readName(buf, at)).toEqual({ name: 'www.example.com', end: at + 6, isCompressed: true });
    expect(skipName(buf, at)).toBe(at + 6);
    expect(readName(buf, 12)).toEqual({ name: 'example.com', end: 25, isCompressed: false });
  });

  it('refuses pointer chains that do not move strictly backward (loops between two pointers)', () => {
    // offset 12: pointer to 14; offset 14: pointer to 12
    const buf = Buffer.concat([Buffer.alloc(12), ptr(14), ptr(12)]);
    expect(readName(buf, 12)).toBeNull();
    expect(readName(buf, 14)).toBeNull();
  });

  it('counts the octets a pointer brings in: labels + a pointed-to name over 255 octets is refused', () => {
    const header = Buffer.alloc(12); // names start after the header; pointers may not aim into it
    const long = wireLabels(['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63)]); // 193 octets
    const buf = Buffer.concat([header, long, wireLabels(['d'.repeat(61)]).subarray(0, 62), ptr(12), wireLabels(['e'.repeat(62)]).subarray(0, 63), ptr(12)]);
    expect(readName(buf, 12 + long.length)?.name).toHaveLength(253); // 62 + 193 = 255 octets
    expect(readName(buf, 12 + long.length + 64)).toBeNull(); // 63 + 193 = 256 octets
  });

  it('refuses a pointer into the header (a name there can only be garbage)', () => {
    const buf = Buffer.concat([Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ptr(2)]);
    expect(readName(buf, 12)).toBeNull();
  });

  it('skipName and skipRecord return -1 when the bytes run out', () => {
    expect(skipName(Buffer.from([3, 0x61]), 0)).toBe(-1);
    expect(skipName(Buffer.from([0xc0]), 0)).toBe(-1);
    expect(skipName(Buffer.from([0x80, 0]), 0)).toBe(-1);
    const record = rr(wireName('a.example'), T.A, 60, aRdata('192.0.2.1'));
    expect(skipRecord(record, 0)).toBe(record.length);
    expect(skipRecord(record.subarray(0, record.length - 1), 0)).toBe(-1);
    expect(skipRecord(record.subarray(0, 15), 0)).toBe(-1);
  });
});

describe('encodeName and typeName', () => {
  it('writes the wire form of a presentation name, escapes undone', () => {
    expect(encodeName('www.example.com').equals(wireName('www.example.com'))).toBe(true);
    expect(encodeName('').equals(Buffer.from([0]))).toBe(true);
    expect(encodeName('a\\.b.example').equals(wireLabels(['a.b', 'example']))).toBe(true);
    expect(encodeName('a\\\\b.example').equals(wireLabels(['a\\b', 'example']))).toBe(true);
  });

  it('names types, and falls back to TYPEn', () => {
    expect(typeName(TYPE.HTTPS)).toBe('HTTPS');
    expect(typeName(99)).toBe('TYPE99');
  });
});

describe('properties', () => {
  const label = fc.uint8Array({ minLength: 1, maxLength: 63 });

  it('parseQuery never throws, on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (bytes) => {
        const parsed = parseQuery(Buffer.from(bytes));
        expect(['query', 'drop', 'error']).toContain(parsed.kind);
      }),
      { numRuns: 3000 },
    );
  });

  it('parseQuery never throws on a valid query with bytes changed', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(60), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(60), (changes, cut) => {
        const buf = buildQuery({ name: 'talk-pilsner.kakao.com', edns: { options: [{ code: 10, data: Buffer.alloc(8) }] } });
        for (const [at, value] of changes) buf[at % buf.length] = value;
        const parsed = parseQuery(buf.subarray(0, buf.length - (cut % 8)));
        if (parsed.kind === 'query') expect(parsed.query.questionEnd).toBeLessThanOrEqual(buf.length);
      }),
      { numRuns: 3000 },
    );
  });

  it('any name of raw labels round-trips: parse gives a presentation form that encodeName writes back (lower-cased)', () => {
    fc.assert(
      fc.property(fc.array(label, { minLength: 0, maxLength: 3 }), (labels) => {
        const wire = wireLabels(labels.map((l) => Buffer.from(l)));
        const q = asQuery(parseQuery(buildQuery({ nameWire: wire })));
        // lower-case every byte that is not a length byte
        let pos = 0;
        const expected = Buffer.from(wire);
        while (expected[pos] !== 0) {
          for (let i = pos + 1; i <= pos + expected[pos]!; i++) if (expected[i]! >= 0x41 && expected[i]! <= 0x5a) expected[i] = expected[i]! | 0x20;
          pos += expected[pos]! + 1;
        }
        expect(encodeName(q.qname).equals(expected)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

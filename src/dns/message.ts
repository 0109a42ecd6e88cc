import { HEADER_BYTES, TYPE, readName, skipName, type Edns, type Query } from './wire.js';

/**
 * Building and rewriting whole messages: answers we make ourselves (errors, blocks) and
 * upstream answers we keep and serve again. Every function returns a new buffer; stored and
 * prebuilt buffers are never patched in place.
 */
export const OUR_UDP_SIZE = 1232;
const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;
const OPCODE_MASK = 0x7800;
const EDE_OPTION = 15;

export interface RecordRef {
  section: 'answer' | 'authority' | 'additional';
  nameStart: number;
  type: number;
  klass: number;
  ttlOffset: number;
  ttl: number;
  rdStart: number;
  rdEnd: number;
}

function u16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

/**
 * The records of a response, with offsets; null when the message is malformed. `questionEnd`
 * is where the question section ends.
 */
export function walkResponse(buf: Uint8Array): { questionEnd: number; records: RecordRef[] } | null {
  if (buf.length < HEADER_BYTES || u16(buf, 4) !== 1) return null;
  const qnameEnd = skipName(buf, HEADER_BYTES);
  if (qnameEnd === -1 || qnameEnd + 4 > buf.length) return null;
  const questionEnd = qnameEnd + 4;
  const counts: [RecordRef['section'], number][] = [
    ['answer', u16(buf, 6)],
    ['authority', u16(buf, 8)],
    ['additional', u16(buf, 10)],
  ];
  const records: RecordRef[] = [];
  let pos = questionEnd;
  for (const [section, count] of counts) {
    for (let i = 0; i < count; i++) {
      const nameEnd = skipName(buf, pos);
      if (nameEnd === -1 || nameEnd + 10 > buf.length) return null;
      const rdEnd = nameEnd + 10 + u16(buf, nameEnd + 8);
      if (rdEnd > buf.length) return null;
      const ttl = ((buf[nameEnd + 4]! << 24) | (buf[nameEnd + 5]! << 16) | (buf[nameEnd + 6]! << 8) | buf[nameEnd + 7]!) >>> 0;
      records.push({ section, nameStart: pos, type: u16(buf, nameEnd), klass: u16(buf, nameEnd + 2), ttlOffset: nameEnd + 4, ttl, rdStart: nameEnd + 10, rdEnd });
      pos = rdEnd;
    }
  }
  return pos === buf.length ? { questionEnd, records } : null;
}

/** The OPT record we add to an answer: our UDP size, DO echoed, optional EDE and extended rcode. */
export function buildOpt(edns: Edns, options: { extendedRcode?: number; ede?: { code: number; text: string } } = {}): Buffer {
  const text = options.ede === undefined ? null : Buffer.from(options.ede.text, 'utf8');
  const optionBytes = text === null ? 0 : 4 + 2 + text.length;
  const out = Buffer.alloc(11 + optionBytes);
  out[0] = 0; // root owner
  out.writeUInt16BE(TYPE.OPT, 1);
  out.writeUInt16BE(OUR_UDP_SIZE, 3);
  out[5] = (options.extendedRcode ?? 0) >>> 4;
  out[6] = 0; // version 0
  out[7] = edns.dnssecOk ? 0x80 : 0;
  out[8] = 0;
  out.writeUInt16BE(optionBytes, 9);
  if (text !== null) {
    out.writeUInt16BE(EDE_OPTION, 11);
    out.writeUInt16BE(2 + text.length, 13);
    out.writeUInt16BE(options.ede!.code, 15);
    text.copy(out, 17);
  }
  return out;
}

/** Our OPT without options, one per DO bit: every EDNS answer carries one, so it is built once. */
const PLAIN_OPTS = [false, true].map((dnssecOk) => buildOpt({ udpSize: OUR_UDP_SIZE, version: 0, dnssecOk }));

/** The OPT record of an answer to `edns` with no extended rcode and no options. Copy it, never patch it. */
export function plainOpt(edns: Edns): Buffer {
  return PLAIN_OPTS[edns.dnssecOk ? 1 : 0]!;
}

function responseFlags(queryFlags: number, rcode: number): number {
  return FLAG_QR | (queryFlags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA | (rcode & 0xf);
}

/**
 * An answer with no records of our own: header, the client's question bytes copied as sent
 * (so the 0x20 case it chose comes back), optional authority bytes, and OPT when the client
 * sent EDNS.
 */
export function buildAnswer(
  queryBuf: Uint8Array,
  id: number,
  queryFlags: number,
  rcode: number,
  questionEnd: number | null,
  edns: Edns | null,
  parts: { answers?: { count: number; bytes: Buffer }; authority?: { count: number; bytes: Buffer }; ede?: { code: number; text: string }; opt?: Buffer } = {},
): Buffer {
  const question = questionEnd === null ? null : queryBuf.subarray(HEADER_BYTES, questionEnd);
  const opt = edns === null ? null : (parts.opt ?? buildOpt(edns, { extendedRcode: rcode, ede: parts.ede }));
  const answers = parts.answers?.bytes;
  const authority = parts.authority?.bytes;
  const length = HEADER_BYTES + (question?.length ?? 0) + (answers?.length ?? 0) + (authority?.length ?? 0) + (opt?.length ?? 0);
  const out = Buffer.allocUnsafe(length);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(responseFlags(queryFlags, rcode), 2);
  out.writeUInt16BE(question === null ? 0 : 1, 4);
  out.writeUInt16BE(parts.answers?.count ?? 0, 6);
  out.writeUInt16BE(parts.authority?.count ?? 0, 8);
  out.writeUInt16BE(opt === null ? 0 : 1, 10);
  let pos = HEADER_BYTES;
  if (question !== null) pos += copyInto(out, question, pos);
  if (answers !== undefined) pos += copyInto(out, answers, pos);
  if (authority !== undefined) pos += copyInto(out, authority, pos);
  if (opt !== null) copyInto(out, opt, pos);
  return out;
}

function copyInto(out: Buffer, part: Uint8Array, pos: number): number {
  out.set(part, pos);
  return part.length;
}

/**
 * Cuts an answer to fit the client's UDP size: header, question and OPT only, with TC set,
 * so the client retries over TCP (RFC 1035 4.2.1, RFC 6891 7).
 */
export function truncateForUdp(message: Buffer, query: Query, queryBuf: Uint8Array): Buffer {
  const rcode = message[3]! & 0xf;
  const out = buildAnswer(queryBuf, query.id, query.flags, rcode, query.isQnameCompressed ? null : query.questionEnd, query.edns);
  out.writeUInt16BE(out.readUInt16BE(2) | FLAG_TC, 2);
  return out;
}

export function maxUdpResponse(edns: Edns | null): number {
  return edns === null ? 512 : Math.min(edns.udpSize, OUR_UDP_SIZE);
}

/** The rcode of a response, with the extended bits of its OPT when present. */
export function responseRcode(buf: Uint8Array): number {
  return buf[3]! & 0xf;
}

/** The address in an A or AAAA record's RDATA as text; null for any other record or size. */
export function recordAddress(buf: Uint8Array, record: RecordRef): string | null {
  const length = record.rdEnd - record.rdStart;
  if (record.type === TYPE.A && length === 4) {
    return `${buf[record.rdStart]}.${buf[record.rdStart + 1]}.${buf[record.rdStart + 2]}.${buf[record.rdStart + 3]}`;
  }
  if (record.type === TYPE.AAAA && length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(u16(buf, record.rdStart + i).toString(16));
    return groups.join(':');
  }
  return null;
}

/** Names in an answer's CNAME and A/AAAA records, for response inspection. */
export function answerTargets(buf: Uint8Array, records: readonly RecordRef[]): { cnames: string[]; addresses: string[] } {
  const cnames: string[] = [];
  const addresses: string[] = [];
  for (const record of records) {
    if (record.section !== 'answer') continue;
    if (record.type === TYPE.CNAME) {
      const target = readName(buf, record.rdStart);
      if (target !== null) cnames.push(target.name);
    } else {
      const address = recordAddress(buf, record);
      if (address !== null) addresses.push(address);
    }
  }
  return { cnames, addresses };
}


/**
 * DNS wire format for the hot path, hand-written: every query must be validated and decided
 * before the cache, and dns2's Packet parse+encode (~29 µs) would cost a hundred times a cache
 * hit (~0.3 µs). This module reads a query's header, question and OPT record with bounds
 * checks everywhere, and walks response records for TTLs and inspection. No I/O.
 */
export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, SVCB: 64, HTTPS: 65, ANY: 255 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

export const HEADER_BYTES = 12;
const MAX_NAME_WIRE = 255;
const MAX_POINTER_JUMPS = 32;

export interface Edns {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
}

export interface Query {
  id: number;
  /** Header flags as received (opcode, RD, CD...). */
  flags: number;
  qname: string;
  qtype: number;
  qclass: number;
  /** Offset just past the question (name + type + class): [12, questionEnd) is the question. */
  questionEnd: number;
  /** True when the question name used compression (then its bytes are not a plain copy). */
  isQnameCompressed: boolean;
  edns: Edns | null;
}

export type QueryParse =
  | { kind: 'query'; query: Query }
  /** Not answerable at all: too short for a header, or a response (QR=1). */
  | { kind: 'drop'; reason: 'short' | 'response' }
  /** Answer with this rcode; question and EDNS included when they could be read. */
  | { kind: 'error'; rcode: number; reason: string; id: number; flags: number; question: { qname: string; qtype: number; qclass: number; end: number } | null; edns: Edns | null };

interface NameRead {
  name: string;
  /** Offset just past the name where it sits (after the first pointer, if any). */
  end: number;
  isCompressed: boolean;
}

const nameScratch: number[] = [];

/**
 * Reads a (possibly compressed) name at `offset`. Returns null on any malformation: a label
 * past the end, a pointer past the end or forward of itself, too many jumps (loops), a name
 * longer than 255 octets, reserved label types. Letters are lower-cased; a '.' or '\' inside a
 * label is escaped so two different wire names never share a presentation form.
 */
export function readName(buf: Uint8Array, offset: number): NameRead | null {
  let pos = offset;
  let end = -1;
  let wireLength = 0;
  let jumps = 0;
  let lowestTarget = offset;
  nameScratch.length = 0;
  for (;;) {
    if (pos >= buf.length) return null;
    const len = buf[pos]!;
    if (len === 0) {
      if (end === -1) end = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return null;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      // Only strictly backward pointers, each earlier than the last: no loop can form.
      // Names start after the header; a pointer into it (or forward of the last) is malformed.
      if (target < HEADER_BYTES || target >= lowestTarget || ++jumps > MAX_POINTER_JUMPS) return null;
      lowestTarget = target;
      if (end === -1) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) return null; // 0x40 / 0x80 label types are obsolete or reserved
    if (pos + 1 + len > buf.length) return null;
    wireLength += len + 1;
    // +1 for the root label still to come
    if (wireLength + 1 > MAX_NAME_WIRE) return null;
    if (nameScratch.length > 0) nameScratch.push(0x2e);
    for (let i = pos + 1; i <= pos + len; i++) {
      let c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      else if (c === 0x2e || c === 0x5c) nameScratch.push(0x5c);
      nameScratch.push(c);
    }
    pos += len + 1;
  }
  return { name: String.fromCharCode.apply(null, nameScratch), end, isCompressed: jumps > 0 };
}

/** Offset just past a name, following no pointer; -1 when it runs off the end. */
export function skipName(buf: Uint8Array, offset: number): number {
  let pos = offset;
  for (;;) {
    if (pos >= buf.length) return -1;
    const len = buf[pos]!;
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2 <= buf.length ? pos + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    pos += len + 1;
  }
}

function u16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

export function parseQuery(buf: Uint8Array): QueryParse {
  if (buf.length < HEADER_BYTES) return { kind: 'drop', reason: 'short' };
  const id = u16(buf, 0);
  const flags = u16(buf, 2);
  if ((flags & 0x8000) !== 0) return { kind: 'drop', reason: 'response' };
  const qdcount = u16(buf, 4);
  const ancount = u16(buf, 6);
  const nscount = u16(buf, 8);
  const arcount = u16(buf, 10);
  const fail = (rcode: number, reason: string, question: { qname: string; qtype: number; qclass: number; end: number } | null = null, edns: Edns | null = null): QueryParse => ({
    kind: 'error',
    rcode,
    reason,
    id,
    flags,
    question,
    edns,
  });
  if (qdcount !== 1) return fail(RCODE.FORMERR, 'qdcount');
  const name = readName(buf, HEADER_BYTES);
  if (name === null || name.end + 4 > buf.length) return fail(RCODE.FORMERR, 'question');
  const qtype = u16(buf, name.end);
  const qclass = u16(buf, name.end + 2);
  const question = { qname: name.name, qtype, qclass, end: name.end + 4 };
  const opcode = (flags >>> 11) & 0xf;
  if (opcode !== 0) return fail(RCODE.NOTIMP, 'opcode', question);

  let pos = question.end;
  for (let i = 0; i < ancount + nscount; i++) {
    pos = skipRecord(buf, pos);
    if (pos === -1) return fail(RCODE.FORMERR, 'record', question);
  }
  let edns: Edns | null = null;
  for (let i = 0; i < arcount; i++) {
    const nameEnd = skipName(buf, pos);
    if (nameEnd === -1 || nameEnd + 10 > buf.length) return fail(RCODE.FORMERR, 'record', question, edns);
    const type = u16(buf, nameEnd);
    const rdlength = u16(buf, nameEnd + 8);
    const next = nameEnd + 10 + rdlength;
    if (next > buf.length) return fail(RCODE.FORMERR, 'record', question, edns);
    if (type === TYPE.OPT) {
      if (edns !== null) return fail(RCODE.FORMERR, 'two-opt', question, edns);
      if (nameEnd !== pos + 1) return fail(RCODE.FORMERR, 'opt-owner', question);
      if (!optionsWellFormed(buf, nameEnd + 10, next)) return fail(RCODE.FORMERR, 'opt-options', question);
      edns = { udpSize: Math.max(512, u16(buf, nameEnd + 2)), version: buf[nameEnd + 5]!, dnssecOk: (buf[nameEnd + 6]! & 0x80) !== 0 };
    }
    pos = next;
  }
  if (pos !== buf.length) return fail(RCODE.FORMERR, 'trailing', question, edns);
  if (edns !== null && edns.version > 0) return fail(RCODE.BADVERS, 'edns-version', question, edns);
  return {
    kind: 'query',
    query: { id, flags, qname: name.name, qtype, qclass, questionEnd: question.end, isQnameCompressed: name.isCompressed, edns },
  };
}

function optionsWellFormed(buf: Uint8Array, start: number, end: number): boolean {
  let pos = start;
  while (pos < end) {
    if (pos + 4 > end) return false;
    pos += 4 + u16(buf, pos + 2);
  }
  return pos === end;
}

/** Offset just past the resource record at `offset`; -1 when malformed. */
export function skipRecord(buf: Uint8Array, offset: number): number {
  const nameEnd = skipName(buf, offset);
  if (nameEnd === -1 || nameEnd + 10 > buf.length) return -1;
  const next = nameEnd + 10 + u16(buf, nameEnd + 8);
  return next > buf.length ? -1 : next;
}

/** The question name in wire form, lower-case and uncompressed, from its presentation form. */
export function encodeName(name: string): Buffer {
  const labels: number[][] = [];
  let current: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c && i + 1 < name.length) {
      current.push(name.charCodeAt(++i));
    } else if (c === 0x2e) {
      labels.push(current);
      current = [];
    } else current.push(c);
  }
  if (name !== '') labels.push(current);
  const out = Buffer.allocUnsafe(labels.reduce((n, l) => n + l.length + 1, 1));
  let pos = 0;
  for (const label of labels) {
    out[pos++] = label.length;
    for (const c of label) out[pos++] = c;
  }
  out[pos] = 0;
  return out;
}

export function typeName(qtype: number): string {
  for (const [name, value] of Object.entries(TYPE)) if (value === qtype) return name;
  return `TYPE${qtype}`;
}

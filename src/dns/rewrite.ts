import { walkResponse, type RecordRef } from './message.js';
import { TYPE, skipName } from './wire.js';

/**
 * Rewrites an upstream response before it is stored and served: the upstream's OPT record is
 * removed (each client gets our own), and the `ech` parameter is removed from HTTPS/SVCB
 * records so clients keep sending a readable SNI that the TLS layer can judge.
 *
 * Removing bytes from the middle of a message would leave compression pointers aimed at the
 * wrong places, so when anything but a trailing OPT changes, the message is rebuilt with every
 * name written out in full (pointers expanded) for the record types whose RDATA holds
 * compressible names. Other RDATA is copied as is.
 */
const SVC_PARAM_ECH = 5;

function u16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

/** A name with every pointer followed, as uncompressed wire bytes; null when malformed. */
function expandName(buf: Uint8Array, offset: number): number[] | null {
  const out: number[] = [];
  let pos = offset;
  let jumps = 0;
  for (;;) {
    if (pos >= buf.length) return null;
    const len = buf[pos]!;
    if (len === 0) {
      out.push(0);
      return out.length > 255 ? null : out;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length || ++jumps > 32) return null;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= pos) return null;
      pos = target;
      continue;
    }
    if ((len & 0xc0) !== 0 || pos + 1 + len > buf.length) return null;
    for (let i = pos; i <= pos + len; i++) out.push(buf[i]!);
    pos += len + 1;
  }
}

/** SVCB/HTTPS RDATA without the ech parameter; null when it had none or is malformed. */
function svcbWithoutEch(buf: Uint8Array, start: number, end: number): Uint8Array | null {
  const targetEnd = skipName(buf, start + 2);
  if (targetEnd === -1 || targetEnd > end) return null;
  const kept: Uint8Array[] = [buf.subarray(start, targetEnd)];
  let found = false;
  let pos = targetEnd;
  while (pos < end) {
    if (pos + 4 > end) return null;
    const key = u16(buf, pos);
    const next = pos + 4 + u16(buf, pos + 2);
    if (next > end) return null;
    if (key === SVC_PARAM_ECH) found = true;
    else kept.push(buf.subarray(pos, next));
    pos = next;
  }
  if (!found) return null;
  return Buffer.concat(kept);
}

export function hasEch(buf: Uint8Array, records: readonly RecordRef[]): boolean {
  return records.some((r) => (r.type === TYPE.HTTPS || r.type === TYPE.SVCB) && svcbWithoutEch(buf, r.rdStart, r.rdEnd) !== null);
}

/** RDATA with its names expanded, for the types whose RDATA may hold compressed names. */
function portableRdata(buf: Uint8Array, record: RecordRef, stripEch: boolean): Uint8Array | null {
  const { rdStart, rdEnd } = record;
  const names = (offsets: number[], fixedAfter: number): Uint8Array | null => {
    const parts: number[] = [];
    let pos = rdStart;
    for (const skip of offsets) {
      for (let i = 0; i < skip; i++) parts.push(buf[pos++]!);
      const name = expandName(buf, pos);
      const nameEnd = skipName(buf, pos);
      if (name === null || nameEnd === -1) return null;
      parts.push(...name);
      pos = nameEnd;
    }
    for (let i = 0; i < fixedAfter; i++) parts.push(buf[pos++]!);
    return pos === rdEnd ? Uint8Array.from(parts) : null;
  };
  switch (record.type) {
    case TYPE.CNAME:
    case TYPE.NS:
    case TYPE.PTR:
      return names([0], 0);
    case TYPE.MX:
      return names([2], 0);
    case TYPE.SRV:
      return names([6], 0);
    case TYPE.SOA:
      return names([0, 0], 20);
    case TYPE.HTTPS:
    case TYPE.SVCB:
      return (stripEch ? svcbWithoutEch(buf, rdStart, rdEnd) : null) ?? buf.subarray(rdStart, rdEnd);
    default:
      return buf.subarray(rdStart, rdEnd);
  }
}

export interface RewriteResult {
  message: Buffer;
  strippedEch: boolean;
}

/** Returns the message ready to store, or null when it is malformed. */
export function prepareUpstreamAnswer(upstream: Buffer, options: { stripEch: boolean }): RewriteResult | null {
  const walked = walkResponse(upstream);
  if (walked === null) return null;
  const { records, questionEnd } = walked;
  const optIndex = records.findIndex((r) => r.type === TYPE.OPT);
  const mustStripEch = options.stripEch && hasEch(upstream, records);
  if (!mustStripEch) {
    if (optIndex === -1) return { message: Buffer.from(upstream), strippedEch: false };
    if (optIndex === records.length - 1) {
      const out = Buffer.from(upstream.subarray(0, records[optIndex]!.nameStart));
      out.writeUInt16BE(u16(out, 10) - 1, 10);
      return { message: out, strippedEch: false };
    }
  }
  const parts: Uint8Array[] = [upstream.subarray(0, questionEnd)];
  const counts = { answer: 0, authority: 0, additional: 0 };
  for (const record of records) {
    if (record.type === TYPE.OPT) continue;
    const owner = expandName(upstream, record.nameStart);
    const rdata = portableRdata(upstream, record, mustStripEch);
    if (owner === null || rdata === null) return null;
    const fixed = Buffer.allocUnsafe(10);
    fixed.set(upstream.subarray(record.ttlOffset - 4, record.ttlOffset + 4), 0);
    fixed.writeUInt16BE(rdata.length, 8);
    parts.push(Uint8Array.from(owner), fixed, rdata);
    counts[record.section]++;
  }
  const out = Buffer.concat(parts);
  out.writeUInt16BE(counts.answer, 6);
  out.writeUInt16BE(counts.authority, 8);
  out.writeUInt16BE(counts.additional, 10);
  return { message: out, strippedEch: mustStripEch };
}


/**
 * DNS messages built and read by hand, for tests. Deliberately independent of src/dns: the
 * builder writes bytes the way RFC 1035/6891 lay them out, and the decoder follows
 * compression pointers itself, so a test never checks the resolver's wire code with itself.
 */

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, SVCB: 64, HTTPS: 65, ANY: 255 } as const;

/** Wire form of a presentation name ('' or '.' is the root); each label as written (case kept). */
export function wireName(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** Wire form from raw labels (a label may hold any byte, '.' included). */
export function wireLabels(labels: (string | Buffer)[]): Buffer {
  return Buffer.concat([
    ...labels.map((l) => {
      const bytes = typeof l === 'string' ? Buffer.from(l, 'latin1') : l;
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    }),
    Buffer.from([0]),
  ]);
}

export function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value, 0);
  return out;
}

export function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

export interface EdnsSpec {
  udpSize?: number;
  version?: number;
  dnssecOk?: boolean;
  extendedRcode?: number;
  options?: { code: number; data: Buffer }[];
  /** Raw option bytes instead of `options` (to write malformed ones). */
  rawOptions?: Buffer;
  /** Owner name bytes instead of the root (to write a malformed OPT). */
  owner?: Buffer;
}

export function optRecord(spec: EdnsSpec = {}): Buffer {
  const rdata = spec.rawOptions ?? Buffer.concat((spec.options ?? []).map((o) => Buffer.concat([u16(o.code), u16(o.data.length), o.data])));
  const ttl = Buffer.from([spec.extendedRcode ?? 0, spec.version ?? 0, spec.dnssecOk === true ? 0x80 : 0, 0]);
  return Buffer.concat([spec.owner ?? Buffer.from([0]), u16(T.OPT), u16(spec.udpSize ?? 1232), ttl, u16(rdata.length), rdata]);
}

/** One resource record: owner bytes (a name or a pointer), type, class, TTL, RDATA. */
export function rr(owner: Buffer, type: number, ttl: number, rdata: Buffer, klass = 1): Buffer {
  return Buffer.concat([owner, u16(type), u16(klass), u32(ttl), u16(rdata.length), rdata]);
}

/** A compression pointer to `offset`. */
export function ptr(offset: number): Buffer {
  return u16(0xc000 | offset);
}

export const QNAME_PTR = ptr(12);

export function aRdata(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

export function aaaaRdata(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return Buffer.concat(groups.map((g) => u16(parseInt(g, 16))));
}

export function soaRdata(mname: Buffer, rname: Buffer, values: { serial?: number; refresh?: number; retry?: number; expire?: number; minimum: number }): Buffer {
  return Buffer.concat([mname, rname, u32(values.serial ?? 1), u32(values.refresh ?? 3600), u32(values.retry ?? 600), u32(values.expire ?? 86400), u32(values.minimum)]);
}

export function txtRdata(...strings: string[]): Buffer {
  return Buffer.concat(strings.map((s) => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')])));
}

/** SVCB/HTTPS RDATA: priority, target (uncompressed, RFC 9460), params in the order given. */
export function svcbRdata(priority: number, target: string, params: { key: number; value: Buffer }[]): Buffer {
  return Buffer.concat([u16(priority), wireName(target), ...params.map((p) => Buffer.concat([u16(p.key), u16(p.value.length), p.value]))]);
}

export interface QuerySpec {
  id?: number;
  /** The 16-bit flags word; default RD only (a standard query). */
  flags?: number;
  name?: string;
  /** Question name bytes instead of `name`. */
  nameWire?: Buffer;
  qtype?: number;
  qclass?: number;
  qdcount?: number;
  edns?: EdnsSpec | null;
  /** Extra raw records after the question (answer / authority / additional), with counts. */
  answers?: Buffer[];
  authority?: Buffer[];
  additional?: Buffer[];
  /** Bytes after everything else. */
  trailing?: Buffer;
  /** Omit the question entirely (header only, with qdcount as given). */
  noQuestion?: boolean;
}

export function buildQuery(spec: QuerySpec = {}): Buffer {
  const additional = [...(spec.additional ?? []), ...(spec.edns === undefined || spec.edns === null ? [] : [optRecord(spec.edns)])];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(spec.id ?? 0x1234, 0);
  header.writeUInt16BE(spec.flags ?? 0x0100, 2);
  header.writeUInt16BE(spec.qdcount ?? (spec.noQuestion === true ? 0 : 1), 4);
  header.writeUInt16BE(spec.answers?.length ?? 0, 6);
  header.writeUInt16BE(spec.authority?.length ?? 0, 8);
  header.writeUInt16BE(additional.length, 10);
  const question = spec.noQuestion === true ? Buffer.alloc(0) : Buffer.concat([spec.nameWire ?? wireName(spec.name ?? 'example.com'), u16(spec.qtype ?? T.A), u16(spec.qclass ?? 1)]);
  return Buffer.concat([header, question, ...(spec.answers ?? []), ...(spec.authority ?? []), ...additional, spec.trailing ?? Buffer.alloc(0)]);
}

export interface ResponseSpec {
  id?: number;
  /** Default QR RD RA. The low 4 bits are the rcode. */
  flags?: number;
  name: string;
  qtype: number;
  answers?: Buffer[];
  authority?: Buffer[];
  additional?: Buffer[];
}

/** A response: the question is written uncompressed at offset 12, so QNAME_PTR points to it. */
export function buildResponse(spec: ResponseSpec): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(spec.id ?? 0x4242, 0);
  header.writeUInt16BE(spec.flags ?? 0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(spec.answers?.length ?? 0, 6);
  header.writeUInt16BE(spec.authority?.length ?? 0, 8);
  header.writeUInt16BE(spec.additional?.length ?? 0, 10);
  return Buffer.concat([header, wireName(spec.name), u16(spec.qtype), u16(1), ...(spec.answers ?? []), ...(spec.authority ?? []), ...(spec.additional ?? [])]);
}

// ---- decoding ------------------------------------------------------------------------------

export interface DecodedRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** RDATA as sent. */
  rdata: Buffer;
  /** RDATA with every name written out (pointers followed), for comparing content. */
  rdataExpanded: Buffer;
  /** A readable value: address, target name, SOA fields, TXT strings, SVCB params. */
  value: unknown;
}

export interface DecodedOpt {
  udpSize: number;
  extendedRcode: number;
  version: number;
  dnssecOk: boolean;
  options: { code: number; data: Buffer }[];
}

export interface Decoded {
  id: number;
  flags: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  cd: boolean;
  /** Header rcode plus the OPT's extended bits. */
  rcode: number;
  questions: { name: string; type: number; class: number }[];
  answers: DecodedRecord[];
  authority: DecodedRecord[];
  additional: DecodedRecord[];
  opt: DecodedOpt | null;
  /** Extended DNS Error (RFC 8914) when the OPT carries one. */
  ede: { code: number; text: string } | null;
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos = 0,
  ) {}

  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new RangeError(`message ends at ${this.buf.length}, need ${this.pos + n}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return Buffer.from(v);
  }
}

/** Reads a name at the reader's position (following pointers), returns its text and wire bytes (expanded). */
function readName(r: Reader): { text: string; wire: Buffer } {
  const labels: Buffer[] = [];
  let pos = r.pos;
  let jumped = false;
  for (let hops = 0; ; hops++) {
    if (hops > 128) throw new RangeError('compression loop');
    if (pos >= r.buf.length) throw new RangeError('name runs off the end');
    const len = r.buf[pos]!;
    if (len === 0) {
      if (!jumped) r.pos = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= r.buf.length) throw new RangeError('pointer runs off the end');
      if (!jumped) r.pos = pos + 2;
      jumped = true;
      pos = ((len & 0x3f) << 8) | r.buf[pos + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new RangeError('reserved label type');
    if (pos + 1 + len > r.buf.length) throw new RangeError('label runs off the end');
    labels.push(r.buf.subarray(pos + 1, pos + 1 + len));
    pos += len + 1;
  }
  const text = labels.map((l) => l.toString('latin1')).join('.');
  return { text: text === '' ? '.' : text, wire: wireLabels(labels) };
}

function decodeRdata(buf: Buffer, type: number, start: number, end: number): { value: unknown; expanded: Buffer } {
  const r = new Reader(buf, start);
  const raw = buf.subarray(start, end);
  const names = (prefix: number, count: number, suffix: number): { parts: Buffer[]; texts: string[] } => {
    const parts: Buffer[] = [r.bytes(prefix)];
    const texts: string[] = [];
    for (let i = 0; i < count; i++) {
      const n = readName(r);
      parts.push(n.wire);
      texts.push(n.text);
    }
    parts.push(r.bytes(suffix));
    if (r.pos !== end) throw new RangeError(`rdata of type ${type} has ${end - r.pos} bytes left over`);
    return { parts, texts };
  };
  switch (type) {
    case T.A:
      return { value: [...raw].join('.'), expanded: Buffer.from(raw) };
    case T.AAAA: {
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
      return { value: groups.join(':'), expanded: Buffer.from(raw) };
    }
    case T.CNAME:
    case T.NS:
    case T.PTR: {
      const { parts, texts } = names(0, 1, 0);
      return { value: texts[0], expanded: Buffer.concat(parts) };
    }
    case T.MX: {
      const { parts, texts } = names(2, 1, 0);
      return { value: { preference: raw.readUInt16BE(0), exchange: texts[0] }, expanded: Buffer.concat(parts) };
    }
    case T.SRV: {
      const { parts, texts } = names(6, 1, 0);
      return { value: { priority: raw.readUInt16BE(0), weight: raw.readUInt16BE(2), port: raw.readUInt16BE(4), target: texts[0] }, expanded: Buffer.concat(parts) };
    }
    case T.SOA: {
      const { parts, texts } = names(0, 2, 20);
      const tail = parts[parts.length - 1]!;
      return {
        value: { mname: texts[0], rname: texts[1], serial: tail.readUInt32BE(0), refresh: tail.readUInt32BE(4), retry: tail.readUInt32BE(8), expire: tail.readUInt32BE(12), minimum: tail.readUInt32BE(16) },
        expanded: Buffer.concat(parts),
      };
    }
    case T.TXT: {
      const strings: string[] = [];
      let p = 0;
      while (p < raw.length) {
        const len = raw[p]!;
        if (p + 1 + len > raw.length) throw new RangeError('TXT string runs off the end');
        strings.push(raw.subarray(p + 1, p + 1 + len).toString('latin1'));
        p += 1 + len;
      }
      return { value: strings, expanded: Buffer.from(raw) };
    }
    case T.SVCB:
    case T.HTTPS: {
      const priority = r.u16();
      const target = readName(r).text;
      const params: { key: number; value: Buffer }[] = [];
      while (r.pos < end) {
        const key = r.u16();
        const len = r.u16();
        params.push({ key, value: r.bytes(len) });
      }
      if (r.pos !== end) throw new RangeError('SVCB params run past the rdata');
      return { value: { priority, target, params }, expanded: Buffer.from(raw) };
    }
    default:
      return { value: Buffer.from(raw), expanded: Buffer.from(raw) };
  }
}

function readRecord(r: Reader): DecodedRecord {
  const name = readName(r).text;
  const type = r.u16();
  const klass = r.u16();
  const ttl = r.u32();
  const rdlength = r.u16();
  r.need(rdlength);
  const start = r.pos;
  r.pos += rdlength;
  const { value, expanded } = type === T.OPT ? { value: null, expanded: Buffer.from(r.buf.subarray(start, start + rdlength)) } : decodeRdata(r.buf, type, start, start + rdlength);
  return { name, type, class: klass, ttl, rdata: Buffer.from(r.buf.subarray(start, start + rdlength)), rdataExpanded: expanded, value };
}

/** Decodes a whole message; throws on anything malformed (trailing bytes included). */
export function decode(buf: Buffer): Decoded {
  const r = new Reader(buf);
  const id = r.u16();
  const flags = r.u16();
  const counts = [r.u16(), r.u16(), r.u16(), r.u16()] as const;
  const questions: Decoded['questions'] = [];
  for (let i = 0; i < counts[0]; i++) questions.push({ name: readName(r).text, type: r.u16(), class: r.u16() });
  const sections: DecodedRecord[][] = [[], [], []];
  for (let s = 0; s < 3; s++) for (let i = 0; i < counts[s + 1]!; i++) sections[s]!.push(readRecord(r));
  if (r.pos !== buf.length) throw new RangeError(`${buf.length - r.pos} trailing bytes`);
  const optRecords = sections[2]!.filter((rec) => rec.type === T.OPT);
  if (optRecords.length > 1) throw new RangeError('two OPT records');
  let opt: DecodedOpt | null = null;
  let ede: Decoded['ede'] = null;
  if (optRecords.length === 1) {
    const o = optRecords[0]!;
    const options: DecodedOpt['options'] = [];
    for (let p = 0; p < o.rdata.length; ) {
      const code = o.rdata.readUInt16BE(p);
      const len = o.rdata.readUInt16BE(p + 2);
      options.push({ code, data: o.rdata.subarray(p + 4, p + 4 + len) });
      p += 4 + len;
    }
    opt = { udpSize: o.class, extendedRcode: o.ttl >>> 24, version: (o.ttl >>> 16) & 0xff, dnssecOk: (o.ttl & 0x8000) !== 0, options };
    const e = options.find((x) => x.code === 15);
    if (e !== undefined) ede = { code: e.data.readUInt16BE(0), text: e.data.subarray(2).toString('utf8') };
  }
  return {
    id,
    flags,
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: (flags & 0xf) | ((opt?.extendedRcode ?? 0) << 4),
    questions,
    answers: sections[0]!,
    authority: sections[1]!,
    additional: sections[2]!.filter((rec) => rec.type !== T.OPT),
    opt,
    ede,
  };
}

/** Records without their ordering-independent noise: name (lower-cased), type, class, ttl, expanded rdata (hex). */
export function content(records: readonly DecodedRecord[]): { name: string; type: number; class: number; ttl: number; rdata: string }[] {
  return records.map((rec) => ({ name: rec.name.toLowerCase(), type: rec.type, class: rec.class, ttl: rec.ttl, rdata: rec.rdataExpanded.toString('hex') }));
}

/** A small seeded PRNG (mulberry32): fuzz runs are reproducible from the seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

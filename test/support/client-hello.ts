/**
 * Hand-built TLS ClientHellos for tests: a TLS 1.3-shaped hello from a list of extensions, framed
 * into records of any size, and a corpus of the shapes that broke SNI readers (split records,
 * tiny records, post-quantum size, case and trailing-dot tricks, duplicate names, GREASE, ECH).
 * Everything is deterministic: "random" fields are fixed bytes.
 */

export interface Extension {
  type: number;
  data: Buffer;
}

export const EXT = {
  serverName: 0,
  supportedGroups: 10,
  signatureAlgorithms: 13,
  alpn: 16,
  padding: 21,
  supportedVersions: 43,
  pskModes: 45,
  keyShare: 51,
  ech: 0xfe0d,
} as const;

/** X25519MLKEM768 (draft-kwiatkowski-tls-ecdhe-mlkem): 1184 + 32 bytes of key share. */
export const GROUP_X25519_MLKEM768 = 0x11ec;
export const GROUP_X25519 = 0x001d;

function u16(n: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(n, 0);
  return out;
}

function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** A vector with a 2-byte length prefix. */
function vec16(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u16(body.length), body]);
}

function vec8(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([body.length]), body]);
}

/** Bytes 0, 1, 2, ... (mod 256), offset by `seed`: stands in for random fields. */
function pattern(length: number, seed = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + seed) & 0xff;
  return out;
}

export function extension(type: number, data: Buffer | string = Buffer.alloc(0)): Extension {
  return { type, data: typeof data === 'string' ? Buffer.from(data, 'latin1') : data };
}

/** server_name with one host_name entry per name (RFC 6066 allows one; more is an evasion). */
export function serverName(...names: string[]): Extension {
  return extension(EXT.serverName, vec16(...names.map((name) => Buffer.concat([Buffer.from([0]), vec16(Buffer.from(name, 'latin1'))]))));
}

export function alpn(...protocols: string[]): Extension {
  return extension(EXT.alpn, vec16(...protocols.map((p) => vec8(Buffer.from(p, 'latin1')))));
}

export function keyShare(...shares: { group: number; length: number }[]): Extension {
  return extension(EXT.keyShare, vec16(...shares.map((s, i) => Buffer.concat([u16(s.group), vec16(pattern(s.length, i + 1))]))));
}

export function padding(length: number): Extension {
  return extension(EXT.padding, Buffer.alloc(length));
}

/** An ECH outer extension (RFC 9849): type outer, cipher suite, config id, enc, payload. */
export function echOuter(payloadLength = 200): Extension {
  return extension(EXT.ech, Buffer.concat([Buffer.from([0]), u16(1), u16(1), Buffer.from([0x42]), vec16(pattern(32, 9)), vec16(pattern(payloadLength, 5))]));
}

/** GREASE (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa; `index` picks one. */
export function grease(index: number, data: Buffer = Buffer.alloc(0)): Extension {
  const b = ((index & 0xf) << 4) | 0x0a;
  return extension((b << 8) | b, data);
}

/** The extensions a TLS 1.3 client sends besides server_name and ALPN. */
export function commonExtensions(): Extension[] {
  return [
    extension(EXT.supportedGroups, vec16(u16(GROUP_X25519), u16(0x0017), u16(0x0018))),
    extension(EXT.signatureAlgorithms, vec16(u16(0x0403), u16(0x0804), u16(0x0401))),
    extension(EXT.supportedVersions, vec8(u16(0x0304), u16(0x0303))),
    extension(EXT.pskModes, vec8(Buffer.from([1]))),
    keyShare({ group: GROUP_X25519, length: 32 }),
  ];
}

export interface HelloBodyOptions {
  extensions: Extension[] | null;
  legacyVersion?: number;
  sessionId?: Buffer;
  cipherSuites?: number[];
  compression?: number[];
  /** Byte offset into `random`: distinct hellos in a corpus. */
  seed?: number;
}

/** The ClientHello body (after the 4-byte handshake header). `extensions: null` omits the block. */
export function helloBody(options: HelloBodyOptions): Buffer {
  const cipherSuites = options.cipherSuites ?? [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f];
  const parts = [
    u16(options.legacyVersion ?? 0x0303),
    pattern(32, options.seed ?? 0),
    vec8(options.sessionId ?? pattern(32, 3)),
    vec16(...cipherSuites.map(u16)),
    vec8(Buffer.from(options.compression ?? [0])),
  ];
  if (options.extensions !== null) parts.push(vec16(...options.extensions.map((e) => Buffer.concat([u16(e.type), vec16(e.data)]))));
  return Buffer.concat(parts);
}

/** A handshake message: type, 3-byte length, body. */
export function handshake(body: Buffer, type = 1, declaredLength = body.length): Buffer {
  return Buffer.concat([Buffer.from([type]), u24(declaredLength), body]);
}

/**
 * Frames handshake bytes into TLS records. `sizes` gives each record's payload size in turn (the
 * last size repeats); a number is one size for all.
 */
export function records(message: Buffer, sizes: number | number[] = 16_384, options: { contentType?: number; version?: number } = {}): Buffer {
  const list = typeof sizes === 'number' ? [sizes] : sizes;
  const out: Buffer[] = [];
  let pos = 0;
  let i = 0;
  while (pos < message.length) {
    const size = Math.min(list[Math.min(i, list.length - 1)]!, message.length - pos);
    out.push(Buffer.from([options.contentType ?? 22]), u16(options.version ?? 0x0301), u16(size), message.subarray(pos, pos + size));
    pos += size;
    i++;
  }
  return Buffer.concat(out);
}

/** One record header (for hand-made framing errors). */
export function recordHeader(contentType: number, length: number, version = 0x0301): Buffer {
  return Buffer.concat([Buffer.from([contentType]), u16(version), u16(length)]);
}

/** A complete hello for `sni` (null: no server_name) in one record, with the usual extensions. */
export function simpleHello(sni: string | null, more: Extension[] = []): Buffer {
  const extensions = [...(sni === null ? [] : [serverName(sni)]), alpn('h2', 'http/1.1'), ...commonExtensions(), ...more];
  return records(handshake(helloBody({ extensions })));
}

/** Splits `bytes` at the given offsets (sorted, inside the buffer). */
export function splitAt(bytes: Buffer, offsets: number[]): Buffer[] {
  const out: Buffer[] = [];
  let last = 0;
  for (const offset of offsets) {
    out.push(bytes.subarray(last, offset));
    last = offset;
  }
  out.push(bytes.subarray(last));
  return out.filter((b) => b.length > 0);
}

/** Deterministic PRNG (mulberry32) for shuffles and mutations. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Flips, overwrites, inserts or deletes a few bytes. */
export function mutate(bytes: Buffer, random: () => number): Buffer {
  let out = Buffer.from(bytes);
  const edits = 1 + Math.floor(random() * 4);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(random() * out.length);
    const op = Math.floor(random() * 5);
    if (op === 0) out[at] = out[at]! ^ (1 << Math.floor(random() * 8));
    else if (op === 1) out[at] = Math.floor(random() * 256);
    else if (op === 2) out = Buffer.concat([out.subarray(0, at), Buffer.from([Math.floor(random() * 256)]), out.subarray(at)]);
    else if (op === 3) out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
    else out = out.subarray(0, Math.max(1, at));
  }
  return out;
}

export type Expected = { kind: 'found'; sni: string; alpn?: string[]; hasEch?: boolean } | { kind: 'invalid'; reason: string } | { kind: 'no-name' };

export interface CorpusCase {
  name: string;
  bytes: Buffer;
  expected: Expected;
}

const ALLOWED = 'allowed.test';
const BLOCKED = 'talk-pilsner.kakao.com';
const LINE = 'legy-jp.line-apps.com';

/** A post-quantum-size hello: X25519MLKEM768 + X25519 key shares, ~1.6 KB, plus padding to `total`. */
export function pqHello(sni: string, total = 4_096): Buffer {
  const base = [serverName(sni), alpn('h2', 'http/1.1'), ...commonExtensions().filter((e) => e.type !== EXT.keyShare), keyShare({ group: GROUP_X25519_MLKEM768, length: 1216 }, { group: GROUP_X25519, length: 32 })];
  const unpadded = handshake(helloBody({ extensions: base })).length;
  // The padding extension costs 4 bytes of header on top of its data.
  return records(handshake(helloBody({ extensions: [...base, padding(Math.max(0, total - unpadded - 4))] })));
}

/**
 * The corpus: every shape a reader must get right, the name each one should yield (or why it
 * is refused). The split-up cases of one hello carry the same expectation.
 */
export function helloCorpus(): CorpusCase[] {
  const plain = (sni: string, more: Extension[] = []): Buffer => handshake(helloBody({ extensions: [serverName(sni), alpn('h2', 'http/1.1'), ...commonExtensions(), ...more] }));
  const random = prng(7);
  const cases: CorpusCase[] = [
    { name: 'allowed, one record', bytes: records(plain(ALLOWED)), expected: { kind: 'found', sni: ALLOWED, alpn: ['h2', 'http/1.1'], hasEch: false } },
    { name: 'blocked, one record', bytes: records(plain(BLOCKED)), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'allowed, two records', bytes: records(plain(ALLOWED), [60, 16_384]), expected: { kind: 'found', sni: ALLOWED } },
    { name: 'blocked, two records split inside the SNI', bytes: records(plain(BLOCKED), [4 + 2 + 32 + 33 + 12 + 2 + 2 + 9 + 10]), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'blocked, three records', bytes: records(plain(LINE), [50, 40, 16_384]), expected: { kind: 'found', sni: LINE } },
    { name: 'allowed, 16-byte records', bytes: records(plain(ALLOWED), 16), expected: { kind: 'found', sni: ALLOWED } },
    { name: 'blocked, 16-byte records', bytes: records(plain(BLOCKED), 16), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'blocked, 1-byte records', bytes: records(plain(BLOCKED), 1), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'allowed, post-quantum size (4 KB)', bytes: pqHello(ALLOWED, 4_096), expected: { kind: 'found', sni: ALLOWED } },
    { name: 'blocked, post-quantum size (8 KB, 1 KB records)', bytes: records(pqHello(BLOCKED, 8_192).subarray(5), 1_024), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'blocked, post-quantum size (1.7 KB)', bytes: pqHello(LINE, 1_700), expected: { kind: 'found', sni: LINE } },
    { name: 'blocked, mixed case', bytes: records(plain('TaLk-PiLsNeR.KaKaO.CoM')), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'allowed, mixed case', bytes: records(plain('Allowed.TEST')), expected: { kind: 'found', sni: ALLOWED } },
    { name: 'blocked, trailing dot', bytes: records(plain(`${BLOCKED}.`)), expected: { kind: 'found', sni: BLOCKED } },
    { name: 'allowed, trailing dot', bytes: records(plain(`${ALLOWED}.`)), expected: { kind: 'found', sni: ALLOWED } },
    {
      name: 'GREASE extensions around the name',
      bytes: records(handshake(helloBody({ extensions: [grease(0), serverName(BLOCKED), grease(5, Buffer.from([0])), ...commonExtensions(), grease(15)] }))),
      expected: { kind: 'found', sni: BLOCKED },
    },
    {
      name: 'extensions in shuffled order',
      bytes: records(handshake(helloBody({ extensions: shuffled([serverName(LINE), alpn('http/1.1'), ...commonExtensions(), padding(10)], random) }))),
      expected: { kind: 'found', sni: LINE, alpn: ['http/1.1'] },
    },
    {
      name: 'server_name last',
      bytes: records(handshake(helloBody({ extensions: [...commonExtensions(), alpn('h2'), serverName(ALLOWED)] }))),
      expected: { kind: 'found', sni: ALLOWED, alpn: ['h2'] },
    },
    {
      name: 'ECH outer hello: the outer SNI decides',
      bytes: records(handshake(helloBody({ extensions: [serverName('public.allowed.test'), ...commonExtensions(), echOuter()] }))),
      expected: { kind: 'found', sni: 'public.allowed.test', hasEch: true },
    },
    {
      name: 'two server_name extensions',
      bytes: records(handshake(helloBody({ extensions: [serverName(ALLOWED), ...commonExtensions(), serverName(BLOCKED)] }))),
      expected: { kind: 'invalid', reason: 'duplicate-sni' },
    },
    {
      name: 'two host_name entries in one server_name',
      bytes: records(handshake(helloBody({ extensions: [serverName(ALLOWED, BLOCKED), ...commonExtensions()] }))),
      expected: { kind: 'invalid', reason: 'multiple-sni' },
    },
    { name: 'no server_name', bytes: records(handshake(helloBody({ extensions: [alpn('h2'), ...commonExtensions()] }))), expected: { kind: 'no-name' } },
    { name: 'no extensions at all', bytes: records(handshake(helloBody({ extensions: null }))), expected: { kind: 'no-name' } },
  ];
  return cases;
}

/** Hellos that must be refused, with the reason the reader gives. */
export function malformedCorpus(): CorpusCase[] {
  const good = handshake(helloBody({ extensions: [serverName(ALLOWED), ...commonExtensions()] }));
  const body = helloBody({ extensions: [serverName(ALLOWED), ...commonExtensions()] });
  const badExtensionsLength = Buffer.from(body);
  // extensions block length: after version(2) random(32) session(1+32) suites(2+10) compression(2)
  badExtensionsLength.writeUInt16BE(badExtensionsLength.readUInt16BE(81) + 1, 81);
  const badSniListLength = Buffer.from(body);
  badSniListLength.writeUInt16BE(badSniListLength.readUInt16BE(87) - 1, 87);
  const invalid = (name: string, bytes: Buffer, reason: string): CorpusCase => ({ name, bytes, expected: { kind: 'invalid', reason } });
  return [
    invalid('SSLv2-style hello (first byte 0x80)', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10, ...new Array<number>(37).fill(7)]), 'sslv2'),
    invalid('zero-length record', Buffer.concat([recordHeader(22, 0), records(good)]), 'empty-record'),
    invalid('zero-length record after the first', Buffer.concat([records(good.subarray(0, 40)), recordHeader(22, 0), records(good.subarray(40))]), 'empty-record'),
    invalid('change_cipher_spec record first', Buffer.concat([recordHeader(20, 1), Buffer.from([1]), records(good)]), 'not-tls'),
    invalid('alert record between two hello records', Buffer.concat([records(good.subarray(0, 40)), recordHeader(21, 2), Buffer.from([1, 0]), records(good.subarray(40))]), 'interleaved-record'),
    invalid('application data first', Buffer.concat([recordHeader(23, 5), Buffer.from('hello'), records(good)]), 'not-tls'),
    invalid('HTTP instead of TLS', Buffer.from('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n'), 'not-tls'),
    invalid('ServerHello (handshake type 2)', records(handshake(body, 2)), 'not-client-hello'),
    invalid('Certificate (handshake type 11)', records(handshake(body, 11)), 'not-client-hello'),
    invalid('record version 2.0', records(good, 16_384, { version: 0x0200 }), 'record-version'),
    invalid('record longer than 2^14', Buffer.concat([recordHeader(22, 16_385), good]), 'record-overflow'),
    invalid('extensions length one too long', records(handshake(badExtensionsLength)), 'extensions-length'),
    invalid('server_name list length one short', records(handshake(badSniListLength)), 'server-name'),
    invalid('handshake length shorter than the body', records(handshake(body, 1, body.length - 10)), 'extensions-length'),
    invalid('session id of 33 bytes', records(handshake(helloBody({ extensions: [serverName(ALLOWED)], sessionId: Buffer.alloc(33) }))), 'session-id'),
    invalid('odd cipher suites length', records(handshake(Buffer.concat([body.subarray(0, 67), Buffer.from([0, 3, 0x13, 0x01, 0x13]), body.subarray(79)]))), 'cipher-suites'),
    invalid('no compression method', records(handshake(helloBody({ extensions: [serverName(ALLOWED)], compression: [] }))), 'compression'),
    invalid('legacy version 2.0 in the hello', records(handshake(helloBody({ extensions: [serverName(ALLOWED)], legacyVersion: 0x0200 }))), 'hello-version'),
    invalid('empty host_name', records(handshake(helloBody({ extensions: [serverName('')] }))), 'server-name'),
    invalid('NUL inside the name', records(handshake(helloBody({ extensions: [serverName('allowed.test\u0000.kakao.com')] }))), 'bad-sni'),
    invalid('space inside the name', records(handshake(helloBody({ extensions: [serverName('talk pilsner.kakao.com')] }))), 'bad-sni'),
    invalid('the same extension twice', records(handshake(helloBody({ extensions: [serverName(ALLOWED), alpn('h2'), alpn('h2')] }))), 'duplicate-extension'),
    invalid('empty ALPN protocol', records(handshake(helloBody({ extensions: [serverName(ALLOWED), alpn('')] }))), 'alpn'),
  ];
}

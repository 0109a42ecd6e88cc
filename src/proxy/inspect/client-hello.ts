import { normalizeQueryName } from '../../match/name.js';
import type { SniffResult } from './sniffer.js';

/**
 * TLS ClientHello reader. Hand-written because it sits on every new connection and must be as
 * strict as a TLS stack, not a first-packet pattern: the hello is reassembled from any number
 * of TCP segments and TLS records by their declared lengths, within a size cap (post-quantum
 * key shares make hellos of 1.6 KB and more; the cap allows far more). It reports the SNI and
 * ALPN; it never decides.
 *
 * Refused, because a real TLS server refuses them too and evasion tools use them: records of
 * another content type before the hello, zero-length or oversized handshake records, a
 * handshake other than ClientHello, SSLv2-style hellos, duplicate extensions, two names in
 * server_name, lengths that do not add up.
 *
 * ECH (RFC 9849): only the outer ClientHello is visible; its SNI (the client-facing server)
 * is what decides, and `hasEch` says an inner hello was present.
 */
export interface ClientHelloInfo {
  sni: string;
  alpn: string[];
  hasEch: boolean;
}

export type ClientHelloResult = SniffResult<ClientHelloInfo>;

const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER = 5;
const MAX_RECORD_PAYLOAD = 16_384;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_ECH = 0xfe0d;
const NAME_TYPE_HOST = 0;

function u16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

const invalid = (reason: string): ClientHelloResult => ({ kind: 'invalid', reason });

/**
 * Reads what the client sent so far. Call again with the whole buffer when more arrives.
 * `maxBytes` caps the bytes read for the hello (records included).
 */
export function readClientHello(buf: Uint8Array, maxBytes: number): ClientHelloResult {
  if (buf.length === 0) return { kind: 'need-more' };
  if ((buf[0]! & 0x80) !== 0) return invalid('sslv2');
  if (buf[0] !== CONTENT_HANDSHAKE) return invalid('not-tls');

  // Pass 1: walk record headers until the handshake message is complete.
  let needed = -1; // handshake bytes needed (4 + body), once the handshake header is seen
  let have = 0;
  let pos = 0;
  const fragments: [number, number][] = [];
  while (needed === -1 || have < needed) {
    if (pos + RECORD_HEADER > buf.length) return pos + RECORD_HEADER > maxBytes ? invalid('too-large') : { kind: 'need-more' };
    if (buf[pos] !== CONTENT_HANDSHAKE) return invalid('interleaved-record');
    if (buf[pos + 1] !== 3) return invalid('record-version');
    const length = u16(buf, pos + 3);
    if (length === 0) return invalid('empty-record');
    if (length > MAX_RECORD_PAYLOAD) return invalid('record-overflow');
    const start = pos + RECORD_HEADER;
    const end = start + length;
    if (end > maxBytes) return invalid('too-large');
    const available = Math.min(end, buf.length);
    fragments.push([start, available]);
    have += available - start;
    if (needed === -1 && have >= 4) {
      const header = gather(buf, fragments, 0, 4);
      if (header[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('not-client-hello');
      needed = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
      if (needed > maxBytes) return invalid('too-large');
    }
    if (available < end) {
      if (needed !== -1 && have >= needed) break;
      return { kind: 'need-more' };
    }
    pos = end;
  }
  const consumed = fragments[fragments.length - 1]![1];
  // A second handshake message packed after the hello would be unusual and is not read;
  // its bytes are replayed upstream with the rest.
  const hello = gather(buf, fragments, 4, needed - 4);
  return parseClientHelloBody(hello, consumed);
}

/**
 * A ClientHello handshake message without TLS records around it, as QUIC carries it in CRYPTO
 * frames (RFC 9001 4.1). `message` is the reassembled stream from offset 0; need-more until it
 * holds the whole message.
 */
export function readClientHelloMessage(message: Uint8Array, maxBytes: number): ClientHelloResult {
  if (message.length < 4) return { kind: 'need-more' };
  if (message[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('not-client-hello');
  const needed = 4 + ((message[1]! << 16) | (message[2]! << 8) | message[3]!);
  if (needed > maxBytes) return invalid('too-large');
  if (message.length < needed) return { kind: 'need-more' };
  return parseClientHelloBody(message.subarray(4, needed), needed);
}

/** Copies `length` handshake bytes starting at `offset` of the reassembled stream. */
function gather(buf: Uint8Array, fragments: readonly [number, number][], offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let skipped = 0;
  let written = 0;
  for (const [start, end] of fragments) {
    for (let i = start; i < end && written < length; i++) {
      if (skipped < offset) {
        skipped++;
        continue;
      }
      out[written++] = buf[i]!;
    }
    if (written === length) break;
  }
  return out;
}

function parseClientHelloBody(body: Uint8Array, consumed: number): ClientHelloResult {
  let pos = 0;
  const need = (n: number): boolean => pos + n <= body.length;
  if (!need(2 + 32 + 1)) return invalid('truncated');
  if (body[pos] !== 3) return invalid('hello-version');
  pos += 2 + 32;
  const sessionIdLength = body[pos]!;
  if (sessionIdLength > 32 || !need(1 + sessionIdLength + 2)) return invalid('session-id');
  pos += 1 + sessionIdLength;
  const cipherLength = u16(body, pos);
  if (cipherLength < 2 || cipherLength % 2 !== 0 || !need(2 + cipherLength + 1)) return invalid('cipher-suites');
  pos += 2 + cipherLength;
  const compressionLength = body[pos]!;
  if (compressionLength < 1 || !need(1 + compressionLength)) return invalid('compression');
  pos += 1 + compressionLength;
  if (pos === body.length) return { kind: 'no-name', consumed };
  if (!need(2)) return invalid('extensions');
  const extensionsEnd = pos + 2 + u16(body, pos);
  if (extensionsEnd !== body.length) return invalid('extensions-length');
  pos += 2;

  const seen = new Set<number>();
  let sni: string | null = null;
  let alpn: string[] = [];
  let hasEch = false;
  while (pos < extensionsEnd) {
    if (pos + 4 > extensionsEnd) return invalid('extension-header');
    const type = u16(body, pos);
    const length = u16(body, pos + 2);
    const start = pos + 4;
    const end = start + length;
    if (end > extensionsEnd) return invalid('extension-length');
    if (seen.has(type)) return invalid(type === EXT_SERVER_NAME ? 'duplicate-sni' : 'duplicate-extension');
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      const name = readServerName(body, start, end);
      if (typeof name !== 'string' || name.startsWith('!')) return invalid(typeof name === 'string' ? name.slice(1) : 'server-name');
      sni = name;
    } else if (type === EXT_ALPN) {
      const protocols = readAlpn(body, start, end);
      if (protocols === null) return invalid('alpn');
      alpn = protocols;
    } else if (type === EXT_ECH) {
      hasEch = true;
    }
    pos = end;
  }
  if (sni === null) return { kind: 'no-name', consumed };
  return { kind: 'found', consumed, sni, alpn, hasEch };
}

/** The one host_name of a server_name extension, or '!reason'. */
function readServerName(body: Uint8Array, start: number, end: number): string {
  if (start + 2 > end || start + 2 + u16(body, start) !== end) return '!server-name';
  let pos = start + 2;
  let name: string | null = null;
  while (pos < end) {
    if (pos + 3 > end) return '!server-name';
    const type = body[pos]!;
    const length = u16(body, pos + 1);
    const nameStart = pos + 3;
    const nameEnd = nameStart + length;
    if (nameEnd > end || length === 0) return '!server-name';
    if (type === NAME_TYPE_HOST) {
      if (name !== null) return '!multiple-sni';
      let text = '';
      for (let i = nameStart; i < nameEnd; i++) {
        const c = body[i]!;
        // RFC 6066: ASCII host name, no trailing dot expected; control bytes and NUL are refused.
        if (c <= 0x20 || c >= 0x7f) return '!bad-sni';
        text += String.fromCharCode(c);
      }
      const normalized = normalizeQueryName(text);
      if (normalized === null) return '!bad-sni';
      name = normalized;
    }
    pos = nameEnd;
  }
  return name ?? '!server-name';
}

function readAlpn(body: Uint8Array, start: number, end: number): string[] | null {
  if (start + 2 > end || start + 2 + u16(body, start) !== end) return null;
  const out: string[] = [];
  let pos = start + 2;
  while (pos < end) {
    const length = body[pos]!;
    if (length === 0 || pos + 1 + length > end) return null;
    out.push(String.fromCharCode(...body.subarray(pos + 1, pos + 1 + length)));
    pos += 1 + length;
  }
  return out;
}

import { isUtf8 } from 'node:buffer';
import { isIPv6 } from 'node:net';
import { formatIp, parseIp } from '../../match/ip.js';
import { normalizeQueryName } from '../../match/name.js';
import { CR, DEL, HASH, LF, LINE_BARE_CR, LINE_SHORT, SP, fieldNameEnd, findHeadLineEnd, isName, isOws, isTchar, listElements, nextLine } from './http-syntax.js';
import type { SniffResult } from './sniffer.js';

/**
 * HTTP/1.x request-head reader (RFC 9112, RFC 9110). Hand-written for the same reason as the
 * ClientHello reader: it runs on every request of every connection. It reads and annotates; it
 * never decides. No I/O.
 *
 * What it reads is what is forwarded: the proxy never passes the client's head bytes on, but
 * the canonical re-serialisation of what was parsed here (act/request-out.ts) — CRLF line ends,
 * one space between request-line parts, every field as parsed, Host set to the destination that
 * was judged, framing fields re-written from the framing this reader decided on. A server behind
 * the proxy therefore cannot read a head differently from the way it was judged, which is what
 * lets the reader accept what is unambiguous and refuse only what is not:
 *
 * Lenient, because real clients and evasion tools send it and servers accept it:
 * - A bare LF ends a line in the request line and header section (zapret tpws --unixeol);
 *   empty lines (CRLF or LF) before the request line are skipped (RFC 9112 2.2).
 * - Several spaces between request-line parts (tpws --methodspace).
 * - Whitespace around a field value (a tab after the Host value, tpws --hosttab) is OWS.
 *
 * Refused, because two parsers could read it two ways:
 * - A bare CR anywhere; obs-fold (a line starting with whitespace); whitespace between a field
 *   name and its colon (RFC 9112 5.1); control characters other than HTAB in a field value.
 * - Anything but HTTP/1.0 and HTTP/1.1; spaces before the method or after the version.
 * - Host names beyond what DNS can carry: letters, digits, '-', '_' and dots (IDN after IDNA);
 *   percent-encoding, userinfo, sub-delims, empty labels and IPv6 zone ids are refused, and so
 *   are numeric hosts that are not a dotted-quad IPv4 address (`127.1`, `0x7f.1`,
 *   `2130706433`), which resolvers and URL parsers read in different ways. Two Host fields.
 * - Transfer-Encoding together with Content-Length, disagreeing Content-Length values, and a
 *   Transfer-Encoding whose last coding is not chunked (or any Transfer-Encoding in HTTP/1.0)
 *   (RFC 9112 6.1, 6.3): where a request ends must be certain.
 * Chunked bodies are read by http-body.ts, which accepts no bare LF at all.
 *
 * Reading is one forward pass and every error is found at a byte position, so for any bytes
 * the result on a prefix is either need-more or the result on the whole: feeding more bytes
 * never changes an answer already given.
 */
export interface RequestHead {
  method: string;
  /** The request-target as sent. */
  target: string;
  /**
   * The request-target to forward: origin-form (path and query; "/" when empty) for an
   * absolute-form request, the target as sent otherwise.
   */
  forwardTarget: string;
  version: 'HTTP/1.0' | 'HTTP/1.1';
  /**
   * The destination: the absolute-form or authority-form target's host when there is one
   * (RFC 9112 3.2.2: it wins over Host), else the Host field's. Normalised: lower-case, no
   * trailing dot, IDNA applied, IPv6 without brackets (RFC 5952 form). Never null in a
   * `found` result (a head without a destination is `no-name`).
   */
  host: string | null;
  /** The port that came with `host`, or null when none was given. */
  port: number | null;
  /**
   * The Host field's host, normalised the same way (null when absent or empty). It differs
   * from `host` when an absolute-form or CONNECT target names another host; the request is
   * forwarded unchanged, so a server behind may still read this one.
   */
  hostField: string | null;
  isConnect: boolean;
  isAbsoluteForm: boolean;
  /** Bytes of the head, up to and including the empty line (= `consumed`). */
  headerBytes: number;
  contentLength: number | null;
  isChunked: boolean;
  /** The connection ends after this request: `Connection: close`, or HTTP/1.0 without keep-alive. */
  hasConnectionClose: boolean;
  /** Every field line, in order: the name as sent, the value without surrounding whitespace (latin1, byte for byte). */
  fields: HeaderField[];
}

export interface HeaderField {
  name: string;
  value: string;
}

/** Why a head was refused: a closed set, used as a metric label. */
export type RequestHeadInvalidReason =
  | 'head-too-large'
  | 'bare-lf'
  | 'bare-cr'
  | 'bad-request-line'
  | 'unsupported-scheme'
  | 'bad-header'
  | 'obs-fold'
  | 'missing-host'
  | 'duplicate-host'
  | 'bad-host'
  | 'bad-content-length'
  | 'ambiguous-length'
  | 'bad-transfer-encoding';

export type RequestHeadResult = SniffResult<{ head: RequestHead }>;


const IS_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const IS_DIGITS = /^[0-9]+$/;
const IS_PORT = /^[1-9][0-9]{0,4}$/;
/** What a normalised host name may look like: DNS labels, none empty. */
const IS_HOST_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
/** Characters of a host as sent, before IDNA (non-ASCII only ever comes from the Host field). */
const HAS_BAD_HOST_CHAR = /[^A-Za-z0-9._\-\u0080-\uffff]/;
/** A last label a URL parser would read as a number (WHATWG URL "ends in a number"). */
const IS_NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;

interface Authority {
  host: string;
  port: number | null;
}

function parsePort(text: string): number | null {
  if (!IS_PORT.test(text)) return null;
  const port = Number(text);
  return port <= 65_535 ? port : null;
}

/** A host name or IPv4 address as sent, normalised; null when it is not a usable host. */
function normalizeHost(text: string): string | null {
  if (HAS_BAD_HOST_CHAR.test(text)) return null;
  const name = normalizeQueryName(text);
  if (name === null || !IS_HOST_NAME.test(name)) return null;
  const lastLabel = name.slice(name.lastIndexOf('.') + 1);
  if (IS_NUMERIC_LABEL.test(lastLabel)) {
    // Only a canonical dotted quad passes; parseIp refuses leading zeros and short forms.
    const ip = parseIp(name);
    if (ip?.family !== 4 || formatIp(ip) !== name) return null;
  }
  return name;
}

/** `host [":" port]` or `"[" IPv6 "]" [":" port]` (RFC 3986 authority without userinfo). */
function parseAuthority(text: string, isPortRequired: boolean): Authority | null {
  let host: string | null;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return null;
    const literal = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
    // Zone ids (RFC 6874) are refused: they only name link-local hops, never a destination.
    if (!isIPv6(literal) || literal.includes('%')) return null;
    const ip = parseIp(literal);
    host = ip === null ? null : formatIp(ip);
  } else {
    const colon = text.indexOf(':');
    if (colon !== -1) portText = text.slice(colon + 1);
    host = normalizeHost(colon === -1 ? text : text.slice(0, colon));
  }
  if (host === null) return null;
  const port = portText === null ? null : parsePort(portText);
  if (portText !== null && port === null) return null;
  if (isPortRequired && port === null) return null;
  return { host, port };
}

const HTTP_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

type TargetRead = { form: 'origin' | 'asterisk' } | { form: 'authority'; authority: Authority } | { form: 'absolute'; authority: Authority; path: string } | { problem: RequestHeadInvalidReason };

/** Classifies a request-target (RFC 9112 3.2) and reads its authority when it carries one. */
function readTarget(method: string, target: string): TargetRead {
  if (method === 'CONNECT') {
    if (target.includes('/')) return { problem: 'bad-request-line' };
    const authority = parseAuthority(target, true);
    return authority === null ? { problem: 'bad-host' } : { form: 'authority', authority };
  }
  if (target.startsWith('/')) return { form: 'origin' };
  if (target === '*') return method === 'OPTIONS' ? { form: 'asterisk' } : { problem: 'bad-request-line' };
  // absolute-form needs `scheme://`; `host:port` (authority-form) is for CONNECT only.
  const scheme = HTTP_SCHEME.exec(target);
  if (scheme === null || !target.startsWith('//', scheme[0].length)) return { problem: 'bad-request-line' };
  if (scheme[1]!.toLowerCase() !== 'http') return { problem: 'unsupported-scheme' };
  const authorityStart = scheme[0].length + 2;
  let authorityEnd = authorityStart;
  while (authorityEnd < target.length && target[authorityEnd] !== '/' && target[authorityEnd] !== '?') authorityEnd++;
  const authority = parseAuthority(target.slice(authorityStart, authorityEnd), false);
  const rest = target.slice(authorityEnd);
  return authority === null ? { problem: 'bad-host' } : { form: 'absolute', authority, path: rest.startsWith('/') ? rest : `/${rest}` };
}

interface HeadState {
  method: string;
  target: string;
  forwardTarget: string;
  version: 'HTTP/1.0' | 'HTTP/1.1';
  authority: Authority | null;
  isConnect: boolean;
  isAbsoluteForm: boolean;
  hostCount: number;
  hostStart: number;
  hostEnd: number;
  contentLengths: string[];
  transferCodings: string[];
  hasTransferEncoding: boolean;
  hasCloseToken: boolean;
  hasKeepAliveToken: boolean;
  fields: HeaderField[];
}

type RequestLineRead = { state: HeadState } | { problem: RequestHeadInvalidReason };

/**
 * `method SP request-target SP HTTP-version` in [start, end) (RFC 9112 3). Several spaces between
 * the parts are read as one; none before the method or after the version.
 */
function readRequestLine(buf: Buffer, start: number, end: number): RequestLineRead {
  const bad = { problem: 'bad-request-line' } as const;
  let methodEnd = start;
  while (methodEnd < end && buf[methodEnd] !== SP) {
    if (!isTchar(buf[methodEnd]!)) return bad;
    methodEnd++;
  }
  if (methodEnd === start || methodEnd >= end) return bad;
  let targetStart = methodEnd;
  while (targetStart < end && buf[targetStart] === SP) targetStart++;
  let targetEnd = targetStart;
  while (targetEnd < end && buf[targetEnd] !== SP) {
    const c = buf[targetEnd]!;
    // Visible ASCII only; a fragment is never sent (RFC 9112 3.2).
    if (c <= SP || c >= DEL || c === HASH) return bad;
    targetEnd++;
  }
  if (targetEnd === targetStart || targetEnd >= end) return bad;
  let versionStart = targetEnd;
  while (versionStart < end && buf[versionStart] === SP) versionStart++;
  const versionText = buf.toString('latin1', versionStart, end);
  if (versionText !== 'HTTP/1.1' && versionText !== 'HTTP/1.0') return bad;
  const method = buf.toString('latin1', start, methodEnd);
  const target = buf.toString('latin1', targetStart, targetEnd);
  const read = readTarget(method, target);
  if ('problem' in read) return read;
  return {
    state: {
      method,
      target,
      forwardTarget: read.form === 'absolute' ? read.path : target,
      version: versionText,
      authority: 'authority' in read ? read.authority : null,
      isConnect: read.form === 'authority',
      isAbsoluteForm: read.form === 'absolute',
      hostCount: 0,
      hostStart: 0,
      hostEnd: 0,
      contentLengths: [],
      transferCodings: [],
      hasTransferEncoding: false,
      hasCloseToken: false,
      hasKeepAliveToken: false,
      fields: [],
    },
  };
}

/** Notes the fields that frame or route the request; every other field is only syntax-checked. */
function noteField(buf: Buffer, nameStart: number, nameEnd: number, valueStart: number, valueEnd: number, state: HeadState): void {
  const length = nameEnd - nameStart;
  if (length === 4 && isName(buf, nameStart, nameEnd, 'host')) {
    state.hostCount++;
    state.hostStart = valueStart;
    state.hostEnd = valueEnd;
  } else if (length === 14 && isName(buf, nameStart, nameEnd, 'content-length')) {
    state.contentLengths.push(...listElements(buf.toString('latin1', valueStart, valueEnd)));
  } else if (length === 17 && isName(buf, nameStart, nameEnd, 'transfer-encoding')) {
    state.hasTransferEncoding = true;
    state.transferCodings.push(...listElements(buf.toString('latin1', valueStart, valueEnd)));
  } else if (length === 10 && isName(buf, nameStart, nameEnd, 'connection')) {
    for (const option of listElements(buf.toString('latin1', valueStart, valueEnd))) {
      const lower = option.toLowerCase();
      if (lower === 'close') state.hasCloseToken = true;
      else if (lower === 'keep-alive') state.hasKeepAliveToken = true;
    }
  }
}

/** Content-Length values (all fields, all list elements) must be digits and agree. */
function readContentLength(values: readonly string[]): number | null | 'bad' {
  let length: number | null = null;
  for (const value of values) {
    if (!IS_DIGITS.test(value)) return 'bad';
    const n = Number(value);
    if (!Number.isSafeInteger(n) || (length !== null && n !== length)) return 'bad';
    length = n;
  }
  return length;
}

/** True when the codings are tokens, chunked is last and only there (RFC 9112 6.1, 7). */
function isChunkedLast(codings: readonly string[]): boolean {
  for (let i = 0; i < codings.length; i++) {
    const coding = codings[i]!;
    if (!IS_TOKEN.test(coding)) return false;
    if ((coding.toLowerCase() === 'chunked') !== (i === codings.length - 1)) return false;
  }
  return codings.length > 0;
}

const invalid = (reason: RequestHeadInvalidReason): RequestHeadResult => ({ kind: 'invalid', reason });

/** The whole head is in [0, consumed): field-level checks, then the result. */
function finishHead(buf: Buffer, state: HeadState, consumed: number): RequestHeadResult {
  if (state.hostCount > 1) return invalid('duplicate-host');
  let hostField: Authority | null = null;
  if (state.hostCount === 1 && state.hostEnd > state.hostStart) {
    // Host arrives as bytes; UTF-8 is how clients send an IDN there, anything else is garbage.
    const raw = buf.subarray(state.hostStart, state.hostEnd);
    hostField = isUtf8(raw) ? parseAuthority(raw.toString('utf8'), false) : null;
    if (hostField === null) return invalid('bad-host');
  }
  if (state.version === 'HTTP/1.1' && state.hostCount === 0) return invalid('missing-host');

  const hasContentLength = state.contentLengths.length > 0;
  if (state.hasTransferEncoding && hasContentLength) return invalid('ambiguous-length');
  const contentLength = readContentLength(state.contentLengths);
  if (contentLength === 'bad') return invalid('bad-content-length');
  if (state.hasTransferEncoding && (state.version === 'HTTP/1.0' || !isChunkedLast(state.transferCodings))) {
    return invalid('bad-transfer-encoding');
  }

  const destination = state.authority ?? hostField;
  if (destination === null) return { kind: 'no-name', consumed };
  const head: RequestHead = {
    method: state.method,
    target: state.target,
    forwardTarget: state.forwardTarget,
    version: state.version,
    host: destination.host,
    port: destination.port,
    hostField: hostField?.host ?? null,
    isConnect: state.isConnect,
    isAbsoluteForm: state.isAbsoluteForm,
    headerBytes: consumed,
    contentLength,
    isChunked: state.hasTransferEncoding,
    hasConnectionClose: state.hasCloseToken || (state.version === 'HTTP/1.0' && !state.hasKeepAliveToken),
    fields: state.fields,
  };
  return { kind: 'found', consumed, head };
}

function lineProblem(code: number, otherwise: RequestHeadInvalidReason): RequestHeadResult | null {
  if (code === LINE_SHORT) return null;
  if (code === LINE_BARE_CR) return invalid('bare-cr');
  return invalid(otherwise);
}

/**
 * Reads the request head at the start of `buf` (what the client has sent so far). Call again
 * with the whole buffer when more arrives. Bytes after the head (a body, pipelined requests)
 * are not looked at; `consumed` is where they start.
 */
export function readRequestHead(buf: Buffer, options: { maxHeadBytes: number }): RequestHeadResult {
  // Only the first maxHeadBytes bytes are ever read; a head not complete within them is too large.
  const limit = Math.min(buf.length, options.maxHeadBytes);
  const short = (): RequestHeadResult => (limit >= options.maxHeadBytes ? invalid('head-too-large') : { kind: 'need-more' });

  // The request line, after any empty lines.
  let pos = 0;
  let state: HeadState;
  for (;;) {
    if (pos >= limit) return short();
    const first = buf[pos]!;
    // Checked before the line ends, so bytes that are not HTTP at all (a TLS hello) fail at once.
    if (first !== CR && first !== LF && !isTchar(first)) return invalid('bad-request-line');
    const end = findHeadLineEnd(buf, pos, limit, true);
    if (end < 0) return lineProblem(end, 'bad-request-line') ?? short();
    if (end > pos) {
      const line = readRequestLine(buf, pos, end);
      if ('problem' in line) return invalid(line.problem);
      state = line.state;
      pos = nextLine(buf, end);
      break;
    }
    pos = nextLine(buf, end);
  }

  // Field lines, up to the empty line.
  for (;;) {
    if (pos >= limit) return short();
    // obs-fold, or whitespace between the request line and the first field (RFC 9112 2.2, 5.2).
    if (isOws(buf[pos])) return invalid('obs-fold');
    const end = findHeadLineEnd(buf, pos, limit, false);
    if (end < 0) return lineProblem(end, 'bad-header') ?? short();
    if (end === pos) return finishHead(buf, state, nextLine(buf, end));
    const nameEnd = fieldNameEnd(buf, pos, end);
    if (nameEnd === -1) return invalid('bad-header');
    let valueStart = nameEnd + 1;
    let valueEnd = end;
    while (valueStart < valueEnd && isOws(buf[valueStart])) valueStart++;
    while (valueEnd > valueStart && isOws(buf[valueEnd - 1])) valueEnd--;
    noteField(buf, pos, nameEnd, valueStart, valueEnd, state);
    state.fields.push({ name: buf.toString('latin1', pos, nameEnd), value: buf.toString('latin1', valueStart, valueEnd) });
    pos = nextLine(buf, end);
  }
}

/**
 * How many body bytes follow the head before the next request can start (RFC 9112 6.3):
 * 'chunked' (read it with http-body.ts's ChunkedReader), the Content-Length, or 0 when neither is present. A
 * CONNECT has no body: what follows its head belongs to the tunnel.
 */
export function bodyLength(head: RequestHead): number | 'chunked' {
  if (head.isConnect) return 0;
  if (head.isChunked) return 'chunked';
  return head.contentLength ?? 0;
}


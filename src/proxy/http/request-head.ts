import { isUtf8 } from 'node:buffer';
import { isIPv6 } from 'node:net';
import { formatIp, parseIp } from '../../match/ip.js';
import { normalizeQueryName } from '../../match/name.js';
import type { SniffResult } from '../sniffer.js';

/**
 * HTTP/1.x request-head reader (RFC 9112, RFC 9110). Hand-written for the same reason as the
 * ClientHello reader: it runs on every request of every connection, and it must be as strict as
 * the strictest server behind it, because a head that two parsers read differently is how
 * requests are smuggled past a filter. It reads and annotates; it never decides. No I/O.
 *
 * Strict on purpose:
 * - Lines end in CRLF only. A bare LF or a bare CR is refused ('bare-lf', 'bare-cr') rather
 *   than accepted as many servers do: accepting it here while a server behind us does not (or
 *   the reverse) lets two parsers see different heads. Empty lines (CRLF) before the request
 *   line are skipped (RFC 9112 2.2) and count in `consumed`.
 * - Single spaces in the request line; only HTTP/1.0 and HTTP/1.1.
 * - No whitespace between a field name and its colon, no obs-fold, no control character other
 *   than HTAB in a field value.
 * - Host names are reduced to what DNS can carry: letters, digits, '-', '_' and dots (IDN
 *   after IDNA); percent-encoding, userinfo, sub-delims, empty labels and IPv6 zone ids are
 *   refused, and so are numeric hosts that are not a dotted-quad IPv4 address (`127.1`,
 *   `0x7f.1`, `2130706433`), which resolvers and URL parsers read in different ways.
 * - Transfer-Encoding together with Content-Length, disagreeing Content-Length values,
 *   and a Transfer-Encoding whose last coding is not chunked (or any Transfer-Encoding in
 *   HTTP/1.0) are refused (RFC 9112 6.1, 6.3): the proxy forwards bytes unchanged and must
 *   know exactly where each request ends.
 *
 * Reading is one forward pass and every error is found at a byte position, so for any bytes
 * the result on a prefix is either need-more or the result on the whole: feeding more bytes
 * never changes an answer already given.
 */

export interface RequestHead {
  method: string;
  /** The request-target as sent. */
  target: string;
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

export type ChunkedScan = { kind: 'need-more' } | { kind: 'done'; end: number } | { kind: 'invalid'; reason: ChunkedInvalidReason };

export type ChunkedInvalidReason = 'body-too-large' | 'bare-lf' | 'bare-cr' | 'bad-chunk-size' | 'bad-chunk-ext' | 'bad-chunk' | 'bad-trailer' | 'obs-fold';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const HASH = 0x23;
const DEL = 0x7f;

/** tchar (RFC 9110 5.6.2): the characters of a method, a field name, a coding. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

function isOws(c: number | undefined): boolean {
  return c === SP || c === HTAB;
}

// findLineEnd outcomes other than an index.
const LINE_SHORT = -1;
const LINE_BARE_LF = -2;
const LINE_BARE_CR = -3;
const LINE_CONTROL = -4;

/**
 * Index of the CR of the CRLF ending the line that starts at `from`, looking below `limit`;
 * or a LINE_* code: the line is not complete yet, or holds a bare LF, a bare CR, or a control
 * character other than HTAB (with `isAsciiOnly`, any byte above 0x7e as well).
 */
function findLineEnd(buf: Uint8Array, from: number, limit: number, isAsciiOnly: boolean): number {
  for (let i = from; i < limit; i++) {
    const c = buf[i]!;
    if (c === CR) {
      if (i + 1 >= limit) return LINE_SHORT;
      return buf[i + 1] === LF ? i : LINE_BARE_CR;
    }
    if (c === LF) return LINE_BARE_LF;
    if ((c < SP && c !== HTAB) || c === DEL || (isAsciiOnly && c > DEL)) return LINE_CONTROL;
  }
  return LINE_SHORT;
}

/**
 * End of a field name when [start, end) is `token ":" value` (RFC 9112 5), else -1. A space
 * before the colon is refused (RFC 9112 5.1: MUST reject, a known smuggling vector).
 */
function fieldNameEnd(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && isTchar(buf[i]!)) i++;
  return i > start && i < end && buf[i] === COLON ? i : -1;
}

/** Case-insensitive comparison of buf[start, end) with a lower-case ASCII name. */
function isName(buf: Uint8Array, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if ((buf[start + i]! | 0x20) !== name.charCodeAt(i)) return false;
  return true;
}

/** Elements of a comma-separated list (RFC 9110 5.6.1), trimmed; empty elements kept as ''. */
function listElements(value: string): string[] {
  return value.split(',').map((element) => element.replace(/^[ \t]+|[ \t]+$/g, ''));
}

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

type TargetRead = { form: 'origin' | 'asterisk' } | { form: 'absolute' | 'authority'; authority: Authority } | { problem: RequestHeadInvalidReason };

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
  return authority === null ? { problem: 'bad-host' } : { form: 'absolute', authority };
}

interface HeadState {
  method: string;
  target: string;
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
}

type RequestLineRead = { state: HeadState } | { problem: RequestHeadInvalidReason };

/** `method SP request-target SP HTTP-version` in [start, end) (RFC 9112 3). */
function readRequestLine(buf: Buffer, start: number, end: number): RequestLineRead {
  const bad = { problem: 'bad-request-line' } as const;
  let methodEnd = start;
  while (methodEnd < end && buf[methodEnd] !== SP) {
    if (!isTchar(buf[methodEnd]!)) return bad;
    methodEnd++;
  }
  if (methodEnd === start || methodEnd >= end) return bad;
  const targetStart = methodEnd + 1;
  let targetEnd = targetStart;
  while (targetEnd < end && buf[targetEnd] !== SP) {
    const c = buf[targetEnd]!;
    // Visible ASCII only; a fragment is never sent (RFC 9112 3.2).
    if (c <= SP || c >= DEL || c === HASH) return bad;
    targetEnd++;
  }
  if (targetEnd === targetStart || targetEnd >= end) return bad;
  const versionText = buf.toString('latin1', targetEnd + 1, end);
  if (versionText !== 'HTTP/1.1' && versionText !== 'HTTP/1.0') return bad;
  const method = buf.toString('latin1', start, methodEnd);
  const target = buf.toString('latin1', targetStart, targetEnd);
  const read = readTarget(method, target);
  if ('problem' in read) return read;
  return {
    state: {
      method,
      target,
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
  };
  return { kind: 'found', consumed, head };
}

function lineProblem(code: number, otherwise: RequestHeadInvalidReason): RequestHeadResult | null {
  if (code === LINE_SHORT) return null;
  if (code === LINE_BARE_LF) return invalid('bare-lf');
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
    if (first !== CR && !isTchar(first)) return invalid('bad-request-line');
    const end = findLineEnd(buf, pos, limit, true);
    if (end < 0) return lineProblem(end, 'bad-request-line') ?? short();
    if (end > pos) {
      const line = readRequestLine(buf, pos, end);
      if ('problem' in line) return invalid(line.problem);
      state = line.state;
      pos = end + 2;
      break;
    }
    pos = end + 2;
  }

  // Field lines, up to the empty line.
  for (;;) {
    if (pos >= limit) return short();
    // obs-fold, or whitespace between the request line and the first field (RFC 9112 2.2, 5.2).
    if (isOws(buf[pos])) return invalid('obs-fold');
    const end = findLineEnd(buf, pos, limit, false);
    if (end < 0) return lineProblem(end, 'bad-header') ?? short();
    if (end === pos) return finishHead(buf, state, end + 2);
    const nameEnd = fieldNameEnd(buf, pos, end);
    if (nameEnd === -1) return invalid('bad-header');
    let valueStart = nameEnd + 1;
    let valueEnd = end;
    while (valueStart < valueEnd && isOws(buf[valueStart])) valueStart++;
    while (valueEnd > valueStart && isOws(buf[valueEnd - 1])) valueEnd--;
    noteField(buf, pos, nameEnd, valueStart, valueEnd, state);
    pos = end + 2;
  }
}

/**
 * How many body bytes follow the head before the next request can start (RFC 9112 6.3):
 * 'chunked' (walk it with scanChunked), the Content-Length, or 0 when neither is present. A
 * CONNECT has no body: what follows its head belongs to the tunnel.
 */
export function bodyLength(head: RequestHead): number | 'chunked' {
  if (head.isConnect) return 0;
  if (head.isChunked) return 'chunked';
  return head.contentLength ?? 0;
}

/** Largest size that may take one more hex digit and stay a safe integer. */
const MAX_CHUNK_SIZE_BEFORE_DIGIT = Math.floor((Number.MAX_SAFE_INTEGER - 15) / 16);

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** Index after a quoted-string starting at `start` (a DQUOTE), or -1 (RFC 9110 5.6.4). */
function quotedStringEnd(buf: Uint8Array, start: number, end: number): number {
  for (let i = start + 1; i < end; i++) {
    const c = buf[i]!;
    if (c === DQUOTE) return i + 1;
    if (c === BACKSLASH) i++;
  }
  return -1;
}

function tokenEnd(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && isTchar(buf[i]!)) i++;
  return i;
}

function skipOws(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && isOws(buf[i])) i++;
  return i;
}

/**
 * Reads `chunk-size [chunk-ext]` in [start, end) (RFC 9112 7.1.1); returns the size, or a
 * reason. Extensions are `; name [= token / quoted-string]` with optional whitespace around
 * `;` and `=`, none after the last one.
 */
function readChunkSizeLine(buf: Uint8Array, start: number, end: number): number | ChunkedInvalidReason {
  let size = 0;
  let i = start;
  for (let digit = i < end ? hexValue(buf[i]!) : -1; digit !== -1; digit = i < end ? hexValue(buf[i]!) : -1) {
    // Leading zeros are fine; a size past 2^53 - 1 is not (it could not be counted exactly).
    if (size > MAX_CHUNK_SIZE_BEFORE_DIGIT) return 'bad-chunk-size';
    size = size * 16 + digit;
    i++;
  }
  if (i === start) return 'bad-chunk-size';
  while (i < end) {
    i = skipOws(buf, i, end);
    if (i >= end || buf[i] !== SEMICOLON) return 'bad-chunk-ext';
    i = skipOws(buf, i + 1, end);
    const nameEnd = tokenEnd(buf, i, end);
    if (nameEnd === i) return 'bad-chunk-ext';
    i = nameEnd;
    const afterSpace = skipOws(buf, i, end);
    if (afterSpace < end && buf[afterSpace] === EQUALS) {
      const valueStart = skipOws(buf, afterSpace + 1, end);
      const valueEnd = buf[valueStart] === DQUOTE ? quotedStringEnd(buf, valueStart, end) : tokenEnd(buf, valueStart, end);
      if (valueEnd <= valueStart) return 'bad-chunk-ext';
      i = valueEnd;
    }
  }
  return size;
}

/**
 * Finds the end of a chunked body starting at `offset` (RFC 9112 7.1): chunks, the last chunk,
 * trailer fields, the final CRLF. Reads in place, copies nothing. `maxBytes` caps the whole
 * body (from `offset`): a body that would end past it is 'body-too-large', as soon as a chunk
 * size says so. Like readRequestHead, a prefix gives need-more or the final answer.
 */
export function scanChunked(buf: Buffer, offset: number, maxBytes: number): ChunkedScan {
  const cap = offset + maxBytes;
  const limit = Math.min(buf.length, cap);
  const short = (): ChunkedScan => (limit >= cap ? { kind: 'invalid', reason: 'body-too-large' } : { kind: 'need-more' });
  const fail = (reason: ChunkedInvalidReason): ChunkedScan => ({ kind: 'invalid', reason });
  const lineFail = (code: number, otherwise: ChunkedInvalidReason): ChunkedScan => {
    if (code === LINE_SHORT) return short();
    return fail(code === LINE_BARE_LF ? 'bare-lf' : code === LINE_BARE_CR ? 'bare-cr' : otherwise);
  };

  let pos = offset;
  for (;;) {
    const lineEnd = findLineEnd(buf, pos, limit, false);
    if (lineEnd < 0) return lineFail(lineEnd, 'bad-chunk-ext');
    const size = readChunkSizeLine(buf, pos, lineEnd);
    if (typeof size === 'string') return fail(size);
    pos = lineEnd + 2;
    if (size === 0) break;
    const dataEnd = pos + size;
    if (dataEnd + 2 > cap) return fail('body-too-large');
    if (dataEnd + 2 > buf.length) return { kind: 'need-more' };
    if (buf[dataEnd] !== CR || buf[dataEnd + 1] !== LF) return fail('bad-chunk');
    pos = dataEnd + 2;
  }

  // Trailer fields, then the empty line.
  for (;;) {
    if (pos >= limit) return short();
    if (isOws(buf[pos])) return fail('obs-fold');
    const lineEnd = findLineEnd(buf, pos, limit, false);
    if (lineEnd < 0) return lineFail(lineEnd, 'bad-trailer');
    if (lineEnd === pos) return { kind: 'done', end: lineEnd + 2 };
    if (fieldNameEnd(buf, pos, lineEnd) === -1) return fail('bad-trailer');
    pos = lineEnd + 2;
  }
}

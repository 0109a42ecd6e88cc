/**
 * HTTP/1.x syntax shared by every HTTP reader here (request heads, chunked bodies, response
 * heads): one definition of a line, a token, a field name, so the readers cannot disagree.
 * No I/O.
 */

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;
export const SEMICOLON = 0x3b;
export const EQUALS = 0x3d;
export const DQUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const HASH = 0x23;
export const DEL = 0x7f;

/** tchar (RFC 9110 5.6.2): the characters of a method, a field name, a coding. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

export function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

export function isOws(c: number | undefined): boolean {
  return c === SP || c === HTAB;
}

// findLineEnd outcomes other than an index.
export const LINE_SHORT = -1;
export const LINE_BARE_LF = -2;
export const LINE_BARE_CR = -3;
export const LINE_CONTROL = -4;

/**
 * Index of the CR of the CRLF ending the line that starts at `from`, looking below `limit`;
 * or a LINE_* code: the line is not complete yet, or holds a bare LF, a bare CR, or a control
 * character other than HTAB (with `isAsciiOnly`, any byte above 0x7e as well).
 */
export function findLineEnd(buf: Uint8Array, from: number, limit: number, isAsciiOnly: boolean): number {
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
export function fieldNameEnd(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && isTchar(buf[i]!)) i++;
  return i > start && i < end && buf[i] === COLON ? i : -1;
}

/** Case-insensitive comparison of buf[start, end) with a lower-case ASCII name. */
export function isName(buf: Uint8Array, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if ((buf[start + i]! | 0x20) !== name.charCodeAt(i)) return false;
  return true;
}

/** Elements of a comma-separated list (RFC 9110 5.6.1), trimmed; empty elements kept as ''. */
export function listElements(value: string): string[] {
  return value.split(',').map((element) => element.replace(/^[ \t]+|[ \t]+$/g, ''));
}


/**
 * Like findLineEnd, for the request line and header section, where a bare LF also ends a line
 * (RFC 9112 2.2 lets a recipient accept it; the proxy re-serialises every head with CRLF, so a
 * server behind it never sees the difference). Returns the index of the terminator (the CR of a
 * CRLF, or the LF), or LINE_SHORT, LINE_BARE_CR, LINE_CONTROL.
 */
export function findHeadLineEnd(buf: Uint8Array, from: number, limit: number, isAsciiOnly: boolean): number {
  for (let i = from; i < limit; i++) {
    const c = buf[i]!;
    if (c === LF) return i;
    if (c === CR) {
      if (i + 1 >= limit) return LINE_SHORT;
      return buf[i + 1] === LF ? i : LINE_BARE_CR;
    }
    if ((c < SP && c !== HTAB) || c === DEL || (isAsciiOnly && c > DEL)) return LINE_CONTROL;
  }
  return LINE_SHORT;
}

/** Where the next line starts, after the terminator findHeadLineEnd found at `end`. */
export function nextLine(buf: Uint8Array, end: number): number {
  return buf[end] === CR ? end + 2 : end + 1;
}

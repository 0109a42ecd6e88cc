import { BACKSLASH, CR, DQUOTE, EQUALS, LF, LINE_BARE_CR, LINE_BARE_LF, SEMICOLON, fieldNameEnd, findLineEnd, isOws, isTchar } from './http-syntax.js';

/**
 * HTTP/1.1 message bodies (RFC 9112 6, 7): how a body is delimited, and the one chunked-coding
 * reader, used for request bodies on their way upstream and response bodies on their way back.
 * It reads incrementally, as bytes arrive, and says how many of them belong to the body, so the
 * proxy forwards exactly the body and knows where the next message starts. It never buffers
 * more than one chunk-size or trailer line. No I/O.
 */

/** How a message's body ends. */
export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Only a response: the body runs until the server closes. */
  | { kind: 'close' };

export type ChunkedInvalidReason = 'bare-lf' | 'bare-cr' | 'bad-chunk-size' | 'bad-chunk-ext' | 'bad-chunk' | 'bad-trailer' | 'obs-fold' | 'line-too-long';

export type ChunkedStep = { kind: 'read'; used: number; isDone: boolean } | { kind: 'invalid'; reason: ChunkedInvalidReason };

/** Longest chunk-size line (size and extensions) accepted. */
export const MAX_CHUNK_LINE_BYTES = 4096;

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

type ChunkedState = 'size' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'done';

/**
 * Reads a chunked body (RFC 9112 7.1) piece by piece: chunk-size lines with their extensions
 * checked, exactly `size` data bytes, then CRLF, the last chunk, trailer fields, the final
 * CRLF. Lines end in CRLF only; a bare CR or LF anywhere in the framing is refused, as in heads.
 */
export class ChunkedReader {
  private state: ChunkedState = 'size';
  private line: Buffer[] = [];
  private lineBytes = 0;
  private trailerBytes = 0;
  private left = 0;

  /** `maxTrailerBytes` caps the trailer section as a whole (the head cap is the natural choice). */
  constructor(private readonly maxTrailerBytes: number) {}

  get isDone(): boolean {
    return this.state === 'done';
  }

  /**
   * Reads from the start of `buf` (the bytes after those already read): how many belong to the
   * body, and whether the body ended there. Bytes past the end are not looked at.
   */
  read(buf: Uint8Array): ChunkedStep {
    let pos = 0;
    while (pos < buf.length && this.state !== 'done') {
      switch (this.state) {
        case 'data': {
          const n = Math.min(this.left, buf.length - pos);
          pos += n;
          this.left -= n;
          if (this.left === 0) this.state = 'data-cr';
          break;
        }
        case 'data-cr':
        case 'data-lf': {
          const expected = this.state === 'data-cr' ? CR : LF;
          if (buf[pos] !== expected) return { kind: 'invalid', reason: 'bad-chunk' };
          pos++;
          this.state = this.state === 'data-cr' ? 'data-lf' : 'size';
          break;
        }
        default: {
          const lf = buf.indexOf(LF, pos);
          const end = lf === -1 ? buf.length : lf + 1;
          const limit = this.state === 'size' ? MAX_CHUNK_LINE_BYTES : this.maxTrailerBytes - this.trailerBytes;
          if (this.lineBytes + end - pos > limit) return { kind: 'invalid', reason: this.state === 'size' ? 'line-too-long' : 'bad-trailer' };
          this.line.push(Buffer.from(buf.subarray(pos, end)));
          this.lineBytes += end - pos;
          pos = end;
          if (lf === -1) break;
          const line = Buffer.concat(this.line, this.lineBytes);
          this.line = [];
          this.lineBytes = 0;
          const problem = this.state === 'size' ? this.sizeLine(line) : this.trailerLine(line);
          if (problem !== null) return { kind: 'invalid', reason: problem };
        }
      }
    }
    return { kind: 'read', used: pos, isDone: this.state === 'done' };
  }

  /** A whole line, LF included: null when it ends in CRLF and holds nothing else of CR or LF. */
  private lineProblem(line: Buffer, otherwise: ChunkedInvalidReason): ChunkedInvalidReason | null {
    const end = findLineEnd(line, 0, line.length, false);
    if (end === line.length - 2) return null;
    if (end === LINE_BARE_LF || (end >= 0 && end !== line.length - 2)) return 'bare-lf';
    if (end === LINE_BARE_CR) return 'bare-cr';
    return line.length >= 2 && line[line.length - 2] !== CR ? 'bare-lf' : otherwise;
  }

  private sizeLine(line: Buffer): ChunkedInvalidReason | null {
    const problem = this.lineProblem(line, 'bad-chunk-ext');
    if (problem !== null) return problem;
    const size = readChunkSizeLine(line, 0, line.length - 2);
    if (typeof size === 'string') return size;
    this.left = size;
    this.state = size === 0 ? 'trailer' : 'data';
    return null;
  }

  private trailerLine(line: Buffer): ChunkedInvalidReason | null {
    this.trailerBytes += line.length;
    if (line.length === 2 && line[0] === CR) {
      this.state = 'done';
      return null;
    }
    if (isOws(line[0])) return 'obs-fold';
    const problem = this.lineProblem(line, 'bad-trailer');
    if (problem !== null) return problem;
    return fieldNameEnd(line, 0, line.length - 2) === -1 ? 'bad-trailer' : null;
  }
}

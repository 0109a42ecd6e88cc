import { ChunkedReader, type BodyFraming } from './http-body.js';
import { CR, LF, fieldNameEnd, isName, isOws, listElements } from './http-syntax.js';

/**
 * Reads the responses an HTTP/1.x upstream sends back, to know where each one ends (RFC 9112
 * 6.3): the proxy forwards the bytes unchanged, and this reader only watches them go by, so
 * the proxy knows when no response is owed (a connection may then be switched, cut or closed)
 * and when a server's answer was cut short. No I/O.
 *
 * A response it cannot frame (a malformed head, conflicting lengths, bytes nobody asked for)
 * makes the rest of the connection opaque: forwarded until the server closes, and nothing more
 * is sent on it. That loses keep-alive, never a response boundary.
 */

export interface ResponseHead {
  status: number;
  /** Bytes of the head, up to and including the empty line. */
  headBytes: number;
  contentLength: number | null | 'bad';
  transferCodings: string[] | null;
  /** `Connection: close`, or HTTP/1.0 without keep-alive: the server closes after this response. */
  isLast: boolean;
}

export type ResponseHeadRead = { kind: 'need-more' } | { kind: 'invalid' } | { kind: 'found'; head: ResponseHead };

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: [^\r\n]*)?$/;

/**
 * A response head at the start of `buf`. Lines may end in a bare LF (RFC 9112 2.2 lets a
 * recipient accept it; servers that send it exist, and the proxy only reads, never rewrites,
 * what they send).
 */
export function readResponseHead(buf: Buffer, maxBytes: number): ResponseHeadRead {
  const limit = Math.min(buf.length, maxBytes);
  let pos = 0;
  let status = 0;
  let version = '';
  const lengths: string[] = [];
  let codings: string[] | null = null;
  let hasClose = false;
  let hasKeepAlive = false;
  for (let lineIndex = 0; ; lineIndex++) {
    const lf = buf.indexOf(LF, pos);
    if (lf === -1 || lf >= limit) return limit >= maxBytes ? { kind: 'invalid' } : { kind: 'need-more' };
    const end = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
    if (lineIndex === 0) {
      const match = STATUS_LINE.exec(buf.toString('latin1', pos, end));
      if (match === null) return { kind: 'invalid' };
      version = match[1]!;
      status = Number(match[2]);
    } else if (end === pos) {
      const isLast = hasClose || (version === '0' && !hasKeepAlive);
      const contentLength = readLength(lengths);
      return { kind: 'found', head: { status, headBytes: lf + 1, contentLength, transferCodings: codings, isLast } };
    } else {
      if (isOws(buf[pos])) return { kind: 'invalid' };
      const nameEnd = fieldNameEnd(buf, pos, end);
      if (nameEnd === -1) return { kind: 'invalid' };
      const value = buf.toString('latin1', nameEnd + 1, end).trim();
      if (isName(buf, pos, nameEnd, 'content-length')) lengths.push(...listElements(value));
      else if (isName(buf, pos, nameEnd, 'transfer-encoding')) (codings ??= []).push(...listElements(value).map((c) => c.toLowerCase()));
      else if (isName(buf, pos, nameEnd, 'connection')) {
        for (const option of listElements(value)) {
          const lower = option.toLowerCase();
          if (lower === 'close') hasClose = true;
          else if (lower === 'keep-alive') hasKeepAlive = true;
        }
      }
    }
    pos = lf + 1;
  }
}

function readLength(values: readonly string[]): number | null | 'bad' {
  let length: number | null = null;
  for (const value of values) {
    if (!/^[0-9]+$/.test(value)) return 'bad';
    const n = Number(value);
    if (!Number.isSafeInteger(n) || (length !== null && n !== length)) return 'bad';
    length = n;
  }
  return length;
}

/**
 * How the body of a response to `method` ends (RFC 9112 6.3), 'interim' for a 1xx other than
 * 101 (the final response follows), 'switch' for 101, or null when it cannot be told.
 */
export function responseFraming(method: string, head: ResponseHead): BodyFraming | 'interim' | 'switch' | null {
  if (head.status === 101) return 'switch';
  if (head.status < 200) return 'interim';
  if (method === 'HEAD' || head.status === 204 || head.status === 304) return { kind: 'none' };
  if (head.transferCodings !== null) {
    // A response with both is an error a server should never send; its length cannot be trusted.
    if (head.contentLength !== null) return null;
    return head.transferCodings[head.transferCodings.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  if (head.contentLength === 'bad') return null;
  if (head.contentLength === null) return { kind: 'close' };
  return head.contentLength === 0 ? { kind: 'none' } : { kind: 'length', length: head.contentLength };
}

/** What the response reader reports as bytes go by. */
export interface ResponseEvents {
  /** The head of the final response to the oldest request owed has come (its body may follow). */
  head(status: number): void;
  /** The final response to the oldest request owed is complete; `isLast`: the server closes after it. */
  complete(isLast: boolean): void;
  /** 101 Switching Protocols: what follows is no longer HTTP. */
  switched(): void;
  /** The responses can no longer be told apart (see above). */
  unframed(): void;
}

type ReaderState =
  | { kind: 'head'; buffered: Buffer }
  | { kind: 'length'; left: number; isLast: boolean }
  | { kind: 'chunked'; reader: ChunkedReader; isLast: boolean }
  | { kind: 'close' }
  | { kind: 'opaque' };

/**
 * Follows the responses on one upstream connection. `nextMethod` names the method of the oldest
 * request still owed a response (undefined when none is).
 */
export class ResponseReader {
  private state: ReaderState = { kind: 'head', buffered: Buffer.alloc(0) };

  constructor(
    private readonly nextMethod: () => string | undefined,
    private readonly events: ResponseEvents,
    private readonly maxHeadBytes: number,
  ) {}

  /** Whether a response has begun and not yet ended. */
  get isMidResponse(): boolean {
    return this.state.kind !== 'opaque' && (this.state.kind !== 'head' || this.state.buffered.length > 0);
  }

  /** Every byte the upstream sends, in order. */
  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const state = this.state;
      switch (state.kind) {
        case 'opaque':
        case 'close':
          return;
        case 'head': {
          const method = this.nextMethod();
          if (method === undefined) return this.opaque();
          const previous = state.buffered.length;
          const buffered = previous === 0 ? chunk.subarray(pos) : Buffer.concat([state.buffered, chunk.subarray(pos)]);
          const read = readResponseHead(buffered, this.maxHeadBytes);
          if (read.kind === 'invalid') return this.opaque();
          if (read.kind === 'need-more') {
            this.state = { kind: 'head', buffered: Buffer.from(buffered) };
            return;
          }
          pos += read.head.headBytes - previous;
          this.state = { kind: 'head', buffered: Buffer.alloc(0) };
          this.startBody(method, read.head);
          break;
        }
        case 'length': {
          const n = Math.min(state.left, chunk.length - pos);
          pos += n;
          state.left -= n;
          if (state.left === 0) this.complete(state.isLast);
          break;
        }
        case 'chunked': {
          const step = state.reader.read(chunk.subarray(pos));
          if (step.kind === 'invalid') return this.opaque();
          pos += step.used;
          if (step.isDone) this.complete(state.isLast);
          break;
        }
      }
    }
  }

  /** The upstream sent FIN: a close-delimited body ends there. True when that completed a response. */
  ended(): boolean {
    if (this.state.kind !== 'close') return false;
    this.state = { kind: 'opaque' };
    this.events.complete(true);
    return true;
  }

  private startBody(method: string, head: ResponseHead): void {
    const framing = responseFraming(method, head);
    if (framing === null) return this.opaque();
    if (framing === 'interim') return;
    if (framing === 'switch') {
      this.state = { kind: 'opaque' };
      this.events.switched();
      return;
    }
    this.events.head(head.status);
    switch (framing.kind) {
      case 'none':
        return this.complete(head.isLast);
      case 'length':
        this.state = { kind: 'length', left: framing.length, isLast: head.isLast };
        return;
      case 'chunked':
        this.state = { kind: 'chunked', reader: new ChunkedReader(this.maxHeadBytes), isLast: head.isLast };
        return;
      case 'close':
        this.state = { kind: 'close' };
    }
  }

  private complete(isLast: boolean): void {
    this.state = isLast ? { kind: 'opaque' } : { kind: 'head', buffered: Buffer.alloc(0) };
    this.events.complete(isLast);
  }

  private opaque(): void {
    this.state = { kind: 'opaque' };
    this.events.unframed();
  }
}

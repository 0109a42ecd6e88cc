import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkedReader, MAX_CHUNK_LINE_BYTES } from '../../../../src/proxy/inspect/http-body.js';

/** Test text is latin1: one character, one byte. */
function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

type Scan = { kind: 'done'; end: number } | { kind: 'need-more' } | { kind: 'invalid'; reason: string };

/** Feeds `buf` to a fresh reader in the given pieces; where the body ended, or why it was refused. */
function feed(buf: Buffer, cuts: number[] = [], maxTrailerBytes = 16_384): Scan {
  const reader = new ChunkedReader(maxTrailerBytes);
  const bounds = [...new Set([0, ...cuts.filter((c) => c > 0 && c < buf.length), buf.length])].sort((a, b) => a - b);
  let used = 0;
  for (let i = 0; i < bounds.length - 1; i++) {
    const piece = buf.subarray(bounds[i], bounds[i + 1]);
    let offset = 0;
    while (offset < piece.length) {
      const step = reader.read(piece.subarray(offset));
      if (step.kind === 'invalid') return step;
      used += step.used;
      offset += step.used;
      if (step.isDone) return { kind: 'done', end: used };
      if (step.used === 0) break;
    }
  }
  return { kind: 'need-more' };
}

function scan(text: string): Scan {
  return feed(bytes(text));
}

describe('ChunkedReader', () => {
  it('finds the end of a chunked body', () => {
    const body = '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    expect(scan(body)).toEqual({ kind: 'done', end: body.length });
    expect(scan('0\r\n\r\n')).toEqual({ kind: 'done', end: 5 });
    expect(scan('000\r\n\r\n')).toEqual({ kind: 'done', end: 7 });
  });

  it('reads hex sizes in either case, and with leading zeros', () => {
    const data = 'x'.repeat(26);
    expect(scan(`1A\r\n${data}\r\n0\r\n\r\n`)).toEqual({ kind: 'done', end: 4 + 26 + 2 + 5 });
    expect(scan(`001a\r\n${data}\r\n0\r\n\r\n`)).toEqual({ kind: 'done', end: 6 + 26 + 2 + 5 });
  });

  it('does not look inside chunk data: CRLFs and a fake last chunk in the data are data', () => {
    const body = '10\r\n0\r\n\r\nGET / HTTP/\r\n0\r\n\r\n';
    expect(scan(body)).toEqual({ kind: 'done', end: body.length });
  });

  it('stops at the end of the body: a pipelined request after it is not read', () => {
    const body = '3\r\nabc\r\n0\r\n\r\n';
    expect(scan(`${body}GET / HTTP/1.1\r\n`)).toEqual({ kind: 'done', end: body.length });
  });

  it('accepts chunk extensions: tokens, quoted strings, whitespace around ";" and "="', () => {
    const body = '3;a=b;c="x\\"y;z" \t; d ; e = f;g\r\nabc\r\n0;last\r\n\r\n';
    expect(scan(body)).toEqual({ kind: 'done', end: body.length });
  });

  it('accepts trailer fields', () => {
    const body = '3\r\nabc\r\n0\r\nX-Trailer: t\r\nChecksum:\txyz \xe9\r\n\r\n';
    expect(scan(body)).toEqual({ kind: 'done', end: body.length });
  });

  it('every prefix of a complete body is need-more', () => {
    const body = '3;e="q"\r\nabc\r\n0\r\nX-T: t\r\n\r\n';
    for (let n = 0; n < body.length; n++) expect(scan(body.slice(0, n)), `prefix of ${n} bytes`).toEqual({ kind: 'need-more' });
    expect(scan(body)).toEqual({ kind: 'done', end: body.length });
  });

  it.each([
    ['no size', '\r\nabc\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['a non-hex size', 'g\r\n', 'bad-chunk-size'],
    ['a signed size', '+3\r\nabc\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['a 0x prefix', '0x3\r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['a size past 2^53', 'fffffffffffffff\r\n', 'bad-chunk-size'],
    ['whitespace after the size', '3 \r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['whitespace before the size', ' 3\r\nabc\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['an extension without a name', '3;\r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['an extension with an empty value', '3;a=\r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['an unterminated quoted string', '3;a="x\r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['whitespace after the last extension', '3;a \r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['a control character in the size line', '3;a\x00\r\nabc\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n', 'bad-chunk'],
    ['data shorter than its size', '3\r\nab\r\n0\r\n\r\n', 'bad-chunk'],
    ['a bare LF after the size', '3\nabc\r\n0\r\n\r\n', 'bare-lf'],
    ['a bare CR after the size', '3\rabc\r\n0\r\n\r\n', 'bare-cr'],
    ['a bare LF ending the body', '0\r\n\n', 'bare-lf'],
    ['a malformed trailer', '0\r\nnot a field\r\n\r\n', 'bad-trailer'],
    ['a space before a trailer colon', '0\r\nX-T : v\r\n\r\n', 'bad-trailer'],
    ['a folded trailer', '0\r\nX-T: v\r\n w\r\n\r\n', 'obs-fold'],
  ])('refuses %s', (_what, body, reason) => {
    expect(scan(body)).toEqual({ kind: 'invalid', reason });
  });

  it('refuses a chunk-size line or a trailer section past its cap without buffering it', () => {
    expect(scan(`3;${'a'.repeat(MAX_CHUNK_LINE_BYTES)}`)).toEqual({ kind: 'invalid', reason: 'line-too-long' });
    expect(feed(bytes(`0\r\nX-T: ${'v'.repeat(100)}\r\n\r\n`), [], 50)).toEqual({ kind: 'invalid', reason: 'bad-trailer' });
    expect(feed(bytes(`0\r\nX-T: ${'v'.repeat(10)}\r\n\r\n`), [], 50)).toMatchObject({ kind: 'done' });
  });

  const chunkInput = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    fc
      .array(fc.constantFrom('0', '3', 'a', 'F', ';', '=', '"', '\\', ' ', '\t', '\r\n', '\r', '\n', 'abc', 'X-T: v', ':', '\x00', '\xff'), { maxLength: 40 })
      .map((parts) => bytes(parts.join(''))),
  );

  it('never throws; the same answer however the bytes are split; a prefix is need-more or the final answer', () => {
    fc.assert(
      fc.property(chunkInput, fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 8 }), (buf, cuts) => {
        const whole = feed(buf);
        expect(feed(buf, cuts)).toEqual(whole);
        if (whole.kind === 'done') expect(whole.end).toBeLessThanOrEqual(buf.length);
        for (let n = 0; n < buf.length; n++) {
          const partial = feed(buf.subarray(0, n));
          if (partial.kind !== 'need-more') expect(partial).toEqual(whole);
        }
      }),
      { numRuns: 500 },
    );
  });
});

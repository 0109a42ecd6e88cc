import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ResponseReader, readResponseHead, responseFraming } from '../../../../src/proxy/inspect/http-response.js';

/** Feeds `text` (latin1) to a reader owed `methods`, in the given pieces; the events, in order (heads only when asked). */
function follow(methods: string[], text: string, cuts: number[] = [], endWithFin = false, withHeads = false): string[] {
  const owed = [...methods];
  const events: string[] = [];
  const reader = new ResponseReader(
    () => owed[0],
    {
      head: (status) => {
        if (withHeads) events.push(`head ${status}`);
      },
      complete: (isLast) => {
        events.push(isLast ? `complete-last ${owed[0]}` : `complete ${owed[0]}`);
        owed.shift();
      },
      switched: () => events.push('switched'),
      unframed: () => events.push('unframed'),
    },
    4096,
  );
  const buf = Buffer.from(text, 'latin1');
  const bounds = [...new Set([0, ...cuts.filter((c) => c > 0 && c < buf.length), buf.length])].sort((a, b) => a - b);
  for (let i = 0; i < bounds.length - 1; i++) reader.feed(buf.subarray(bounds[i], bounds[i + 1]));
  if (endWithFin && reader.ended()) events.push('ended a close-delimited body');
  return events;
}

const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('responseFraming (RFC 9112 6.3)', () => {
  const head = (text: string) => {
    const read = readResponseHead(Buffer.from(text, 'latin1'), 4096);
    if (read.kind !== 'found') throw new Error(`not a head: ${read.kind}`);
    return read.head;
  };

  it.each([
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', { kind: 'length', length: 5 }],
    ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', { kind: 'none' }],
    ['GET', 'HTTP/1.1 204 No Content\r\n\r\n', { kind: 'none' }],
    ['GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n', { kind: 'none' }],
    ['GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', { kind: 'chunked' }],
    ['GET', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', { kind: 'close' }],
    ['GET', 'HTTP/1.1 200 OK\r\n\r\n', { kind: 'close' }],
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', { kind: 'none' }],
    ['GET', 'HTTP/1.1 100 Continue\r\n\r\n', 'interim'],
    ['GET', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', 'switch'],
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', null],
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', null],
    ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', null],
  ])('%s %j', (method, text, expected) => {
    expect(responseFraming(method, head(text))).toEqual(expected);
  });

  it('a server that ends lines with a bare LF is still read; a malformed status line is not', () => {
    expect(readResponseHead(Buffer.from('HTTP/1.1 200 OK\nContent-Length: 2\n\nok'), 4096)).toMatchObject({ kind: 'found', head: { status: 200, contentLength: 2, headBytes: 35 } });
    expect(readResponseHead(Buffer.from('HTTP/2 200\r\n\r\n'), 4096)).toEqual({ kind: 'invalid' });
    expect(readResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n'), 4096)).toEqual({ kind: 'invalid' });
    expect(readResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nX: '), 4096)).toEqual({ kind: 'need-more' });
    expect(readResponseHead(Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(100)}`), 64)).toEqual({ kind: 'invalid' });
  });
});

describe('ResponseReader', () => {
  it('follows pipelined responses of every framing to the end of each', () => {
    const text = `${ok('hello')}HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n`;
    expect(follow(['GET', 'GET', 'HEAD', 'GET'], text)).toEqual(['complete GET', 'complete GET', 'complete HEAD', 'complete GET']);
  });

  it('tells when the head of each final response has come, before its body', () => {
    expect(follow(['GET', 'HEAD'], `HTTP/1.1 100 Continue\r\n\r\n${ok('abc')}HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n`, [], false, true)).toEqual(['head 200', 'complete GET', 'head 404', 'complete HEAD']);
    expect(follow(['GET'], 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart', [], false, true)).toEqual(['head 200']);
  });

  it('1xx responses are interim: the final response still completes the request', () => {
    expect(follow(['POST'], `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n${ok('done')}`)).toEqual(['complete POST']);
  });

  it('Connection: close marks the last response; a close-delimited body ends with the FIN', () => {
    expect(follow(['GET'], ok('bye', 'Connection: close\r\n'))).toEqual(['complete-last GET']);
    expect(follow(['GET'], 'HTTP/1.0 200 OK\r\n\r\nbody until close', [], true)).toEqual(['complete-last GET', 'ended a close-delimited body']);
    expect(follow(['GET'], 'HTTP/1.1 200 OK\r\n\r\nbody', [], false)).toEqual([]);
  });

  it('101 switches protocols: nothing after it is read as HTTP', () => {
    expect(follow(['GET'], 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello')).toEqual(['switched']);
  });

  it('what cannot be framed makes the rest opaque: bytes nobody asked for, a bad head, conflicting lengths', () => {
    expect(follow([], ok('x'))).toEqual(['unframed']);
    expect(follow(['GET'], `${ok('a')}${ok('b')}`)).toEqual(['complete GET', 'unframed']);
    expect(follow(['GET'], 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n')).toEqual(['unframed']);
    expect(follow(['GET', 'GET'], 'garbage\r\n\r\n')).toEqual(['unframed']);
    expect(follow(['GET'], 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')).toEqual(['unframed']);
  });

  it('reports the same events however the bytes are split', () => {
    const response = fc.oneof(
      fc.string({ maxLength: 20 }).map((body) => ok(body)),
      fc.array(fc.string({ minLength: 1, maxLength: 10 }), { maxLength: 3 }).map((chunks) => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join('')}0\r\n\r\n`),
      fc.constant('HTTP/1.1 204 No Content\r\n\r\n'),
      fc.constant('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
    );
    fc.assert(
      fc.property(fc.array(response, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 10 }), (responses, cuts) => {
        const text = responses.join('');
        const methods = responses.map(() => 'GET');
        const whole = follow(methods, text);
        expect(whole).toEqual(methods.map(() => 'complete GET'));
        expect(follow(methods, text, cuts)).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 6 }), (bytes, cuts) => {
        follow(['GET', 'HEAD', 'GET'], Buffer.from(bytes).toString('latin1'), cuts, true);
      }),
      { numRuns: 500 },
    );
  });
});

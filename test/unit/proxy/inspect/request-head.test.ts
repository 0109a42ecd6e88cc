import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../../src/config/defaults.js';
import { bodyLength, readRequestHead, type RequestHead, type RequestHeadResult } from '../../../../src/proxy/inspect/request-head.js';

const MAX: number = DEFAULTS.httpMaxHeadBytes;

/** Test text is latin1: one character, one byte (so '\x80' is the byte 0x80). */
function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

function read(input: string | Buffer, maxHeadBytes = MAX): RequestHeadResult {
  return readRequestHead(typeof input === 'string' ? bytes(input) : input, { maxHeadBytes });
}

function headOf(input: string | Buffer): RequestHead {
  const result = read(input);
  if (result.kind !== 'found') throw new Error(`expected a head, got ${JSON.stringify(result)}`);
  expect(result.head.headerBytes).toBe(result.consumed);
  return result.head;
}

/** The invalid reason, or the kind when the result is not invalid. */
function outcome(input: string | Buffer, maxHeadBytes = MAX): string {
  const result = read(input, maxHeadBytes);
  return result.kind === 'invalid' ? result.reason : result.kind;
}

/** A GET for `/` with the given Host value and extra field lines (each ending in CRLF). */
function get(host: string, extra = ''): string {
  return `GET / HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

/** Every prefix of `buf` gives need-more or exactly the whole buffer's result. */
function expectPrefixesConsistent(buf: Buffer, maxHeadBytes = MAX): RequestHeadResult {
  const whole = read(buf, maxHeadBytes);
  for (let n = 0; n < buf.length; n++) {
    const partial = read(buf.subarray(0, n), maxHeadBytes);
    if (partial.kind !== 'need-more') expect(partial, `prefix of ${n} bytes`).toEqual(whole);
  }
  return whole;
}

describe('readRequestHead: a plain request', () => {
  it('reads method, target, version, Host and the head length', () => {
    const text = 'GET /path?q=1 HTTP/1.1\r\nHost: allowed.test\r\nUser-Agent: t\r\n\r\n';
    expect(read(text)).toEqual({
      kind: 'found',
      consumed: text.length,
      head: {
        method: 'GET',
        target: '/path?q=1',
        forwardTarget: '/path?q=1',
        version: 'HTTP/1.1',
        host: 'allowed.test',
        port: null,
        hostField: 'allowed.test',
        isConnect: false,
        isAbsoluteForm: false,
        headerBytes: text.length,
        contentLength: null,
        isChunked: false,
        hasConnectionClose: false,
        fields: [
          { name: 'Host', value: 'allowed.test' },
          { name: 'User-Agent', value: 't' },
        ],
      },
    });
  });

  it('leaves the buffer untouched', () => {
    const buf = bytes(get('TALK-Pilsner.Kakao.COM.'));
    const copy = Buffer.from(buf);
    headOf(buf);
    expect(buf.equals(copy)).toBe(true);
  });

  it('reads the port from Host', () => {
    expect(headOf(get('allowed.test:8080'))).toMatchObject({ host: 'allowed.test', port: 8080 });
    expect(headOf(get('allowed.test:1')).port).toBe(1);
    expect(headOf(get('allowed.test:65535')).port).toBe(65535);
  });

  it('takes Host without whitespace after the colon, and with trailing whitespace', () => {
    expect(headOf('GET / HTTP/1.1\r\nHost:allowed.test\r\n\r\n').host).toBe('allowed.test');
    expect(headOf('GET / HTTP/1.1\r\nhOsT: \tallowed.test \t\r\n\r\n').host).toBe('allowed.test');
  });

  it('allows HTAB and obs-text inside other field values', () => {
    expect(headOf(get('allowed.test', 'X-A: a\tb \xe9\xff\r\n')).host).toBe('allowed.test');
  });

  it('skips empty lines before the request line and counts them in consumed', () => {
    const text = `\r\n\r\n${get('allowed.test')}`;
    const result = read(text);
    expect(result).toMatchObject({ kind: 'found', consumed: text.length, head: { method: 'GET', host: 'allowed.test' } });
  });

  it('accepts extension methods written as tokens', () => {
    expect(headOf(`PROPFIND /dav HTTP/1.1\r\nHost: a.test\r\n\r\n`).method).toBe('PROPFIND');
    expect(headOf(`M-SEARCH! /x HTTP/1.1\r\nHost: a.test\r\n\r\n`).method).toBe('M-SEARCH!');
  });
});

describe('readRequestHead: Host normalisation', () => {
  it('lower-cases and drops trailing dots', () => {
    expect(headOf(get('TALK-Pilsner.Kakao.COM.')).host).toBe('talk-pilsner.kakao.com');
    expect(headOf(get('Talk-Pilsner.KAKAO.com..:8443'))).toMatchObject({ host: 'talk-pilsner.kakao.com', port: 8443 });
  });

  it('maps an IDN sent as UTF-8 to punycode', () => {
    expect(headOf(Buffer.from(get('Bücher.Example'), 'utf8')).host).toBe('xn--bcher-kva.example');
    expect(headOf(Buffer.from(get('ｋａｋａｏ。com'), 'utf8')).host).toBe('kakao.com');
    expect(headOf(Buffer.from(get('talk-pilsner.\u212Aakao.com:80'), 'utf8'))).toMatchObject({ host: 'talk-pilsner.kakao.com', port: 80 });
    expect(headOf(get('XN--BCHER-KVA.example')).host).toBe('xn--bcher-kva.example');
  });

  it('refuses a Host that is not UTF-8, or that IDNA cannot map to a DNS name', () => {
    expect(outcome(get('b\xfccher.example'))).toBe('bad-host');
    expect(outcome(Buffer.from(get('a＠kakao.com'), 'utf8'))).toBe('bad-host');
    expect(outcome(Buffer.from(get('kakao.com：443'), 'utf8'))).toBe('bad-host');
  });

  it('reads IPv6 literals without brackets, in RFC 5952 form', () => {
    expect(headOf(get('[::1]:8080'))).toMatchObject({ host: '::1', port: 8080 });
    expect(headOf(get('[2001:DB8:0:0::1]'))).toMatchObject({ host: '2001:db8::1', port: null });
    expect(headOf(get('[::ffff:127.0.0.1]')).host).toBe('127.0.0.1');
  });

  it('keeps a dotted-quad IPv4 address', () => {
    expect(headOf(get('127.0.0.1:80'))).toMatchObject({ host: '127.0.0.1', port: 80 });
    expect(headOf(get('192.0.2.1.')).host).toBe('192.0.2.1');
  });

  it.each([
    ['userinfo', 'user@allowed.test'],
    ['userinfo with password', 'user:pw@allowed.test'],
    ['a path', 'allowed.test/path'],
    ['a query', 'allowed.test?x'],
    ['two names', 'allowed.test, kakao.com'],
    ['a space inside', 'allowed test'],
    ['percent-encoding', 'kak%61o.com'],
    ['a backslash', 'allowed.test\\kakao.com'],
    ['an empty label', 'allowed..test'],
    ['a leading dot', '.kakao.com'],
    ['only dots', '..'],
    ['port 0', 'allowed.test:0'],
    ['port 65536', 'allowed.test:65536'],
    ['an empty port', 'allowed.test:'],
    ['a signed port', 'allowed.test:+80'],
    ['a port with a leading zero', 'allowed.test:080'],
    ['two ports', 'allowed.test:80:80'],
    ['a port with letters', 'allowed.test:8o'],
    ['only a port', ':80'],
    ['an unbracketed IPv6 address', '::1'],
    ['an unclosed bracket', '[::1'],
    ['text after the bracket', '[::1]x'],
    ['an IPv6 zone id', '[fe80::1%25eth0]'],
    ['IPv4 in brackets', '[127.0.0.1]'],
    ['an IPvFuture literal', '[v1.x]'],
    ['a short IPv4 form', '127.1'],
    ['a hex IPv4 form', '0x7f.0.0.1'],
    ['a 32-bit number', '2130706433'],
    ['IPv4 with a leading zero', '127.000.0.1'],
    ['an IPv4 octet above 255', '256.0.0.1'],
    ['a numeric last label', 'kakao.123'],
    ['a hex last label', 'kakao.0x1f'],
    ['sub-delims', "kakao.com!$&'()*+,;="],
  ])('refuses a Host with %s', (_what, host) => {
    expect(outcome(get(host))).toBe('bad-host');
  });

  it('refuses a bad Host even when an absolute-form target names the destination', () => {
    expect(outcome(`GET http://allowed.test/ HTTP/1.1\r\nHost: user@kakao.com\r\n\r\n`)).toBe('bad-host');
  });
});

describe('readRequestHead: Host presence', () => {
  it('HTTP/1.1 without Host is invalid (missing-host)', () => {
    expect(outcome('GET / HTTP/1.1\r\nAccept: */*\r\n\r\n')).toBe('missing-host');
    expect(outcome('GET http://allowed.test/ HTTP/1.1\r\n\r\n')).toBe('missing-host');
    expect(outcome('CONNECT allowed.test:443 HTTP/1.1\r\n\r\n')).toBe('missing-host');
  });

  it('HTTP/1.0 without Host has no destination (no-name), with the head length', () => {
    const text = 'GET / HTTP/1.0\r\nAccept: */*\r\n\r\n';
    expect(read(text)).toEqual({ kind: 'no-name', consumed: text.length });
  });

  it('an empty Host with an origin-form target has no destination', () => {
    const text = 'GET / HTTP/1.1\r\nHost:\r\n\r\n';
    expect(read(text)).toEqual({ kind: 'no-name', consumed: text.length });
    expect(read('GET / HTTP/1.1\r\nHost:  \t \r\n\r\n').kind).toBe('no-name');
  });

  it('HTTP/1.0 with Host uses it, and HTTP/1.0 with an absolute-form target needs no Host', () => {
    expect(headOf('GET / HTTP/1.0\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ version: 'HTTP/1.0', host: 'allowed.test' });
    expect(headOf('GET http://allowed.test:81/ HTTP/1.0\r\n\r\n')).toMatchObject({ host: 'allowed.test', port: 81, hostField: null });
  });

  it('two Host fields are invalid (duplicate-host), whatever their values or case', () => {
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: kakao.com\r\n\r\n')).toBe('duplicate-host');
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\nX-A: b\r\nhost: allowed.test\r\n\r\n')).toBe('duplicate-host');
    expect(outcome('GET / HTTP/1.0\r\nHOST: a.test\r\nHost:\r\n\r\n')).toBe('duplicate-host');
    expect(outcome('GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: kakao.com\r\n\r\n')).toBe('duplicate-host');
  });

  it('fields that only look like Host do not count as Host', () => {
    expect(outcome('GET / HTTP/1.1\r\nHosts: kakao.com\r\nX-Host: kakao.com\r\n\r\n')).toBe('missing-host');
    expect(headOf(get('allowed.test', 'X-Forwarded-Host: kakao.com\r\nHost-Name: kakao.com\r\n')).host).toBe('allowed.test');
  });
});

describe('readRequestHead: request-target forms', () => {
  it('absolute-form: the URI authority wins over Host (RFC 9112 3.2.2)', () => {
    const head = headOf('GET http://Talk-Pilsner.Kakao.com.:8080/x?y=1 HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
    expect(head).toMatchObject({
      target: 'http://Talk-Pilsner.Kakao.com.:8080/x?y=1',
      host: 'talk-pilsner.kakao.com',
      port: 8080,
      hostField: 'allowed.test',
      isAbsoluteForm: true,
      isConnect: false,
    });
    expect(headOf('GET http://allowed.test/ HTTP/1.1\r\nHost: talk-pilsner.kakao.com:99\r\n\r\n')).toMatchObject({ host: 'allowed.test', port: null, hostField: 'talk-pilsner.kakao.com' });
  });

  it('absolute-form: scheme case-insensitive, path optional, query without path, IPv6 authority', () => {
    expect(headOf('GET HTTP://Allowed.Test HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ host: 'allowed.test', port: null });
    expect(headOf('GET http://allowed.test:81?q HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ host: 'allowed.test', port: 81 });
    expect(headOf('GET http://[::1]:8080/ HTTP/1.1\r\nHost: x.test\r\n\r\n')).toMatchObject({ host: '::1', port: 8080 });
  });

  it.each([
    ['userinfo', 'http://user@allowed.test/'],
    ['userinfo hiding the host', 'http://allowed.test:80@kakao.com/'],
    ['an empty authority', 'http:///path'],
    ['a backslash in the authority', 'http://kakao.com\\@allowed.test/'],
    ['a bad port', 'http://allowed.test:99999/'],
    ['a numeric host', 'http://2130706433/'],
  ])('absolute-form with %s is bad-host', (_what, target) => {
    expect(outcome(`GET ${target} HTTP/1.1\r\nHost: allowed.test\r\n\r\n`)).toBe('bad-host');
  });

  it('absolute-form with another scheme is refused', () => {
    expect(outcome('GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('unsupported-scheme');
    expect(outcome('GET ftp://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('unsupported-scheme');
    expect(outcome('GET http:/allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
    expect(outcome('GET mailto:a@b.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
  });

  it('CONNECT takes an authority-form target with a port', () => {
    const head = headOf('CONNECT Talk-Pilsner.Kakao.com.:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n');
    expect(head).toMatchObject({ method: 'CONNECT', target: 'Talk-Pilsner.Kakao.com.:443', host: 'talk-pilsner.kakao.com', port: 443, hostField: 'allowed.test', isConnect: true, isAbsoluteForm: false });
    expect(bodyLength(head)).toBe(0);
    expect(headOf('CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n')).toMatchObject({ host: '2001:db8::1', port: 8443, isConnect: true });
    expect(headOf('CONNECT allowed.test:443 HTTP/1.0\r\n\r\n')).toMatchObject({ host: 'allowed.test', port: 443, hostField: null });
  });

  it('CONNECT without a port, or with a bad authority, is bad-host', () => {
    expect(outcome('CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-host');
    expect(outcome('CONNECT allowed.test: HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-host');
    expect(outcome('CONNECT user@allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-host');
    expect(outcome('CONNECT [::1] HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-host');
  });

  it('CONNECT with an origin-form or absolute-form target is a bad request line', () => {
    expect(outcome('CONNECT / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
    expect(outcome('CONNECT http://allowed.test:443/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
  });

  it('authority-form is for CONNECT only (the method is case-sensitive)', () => {
    expect(outcome('GET allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
    expect(outcome('connect allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
  });

  it('asterisk-form is for OPTIONS only', () => {
    expect(headOf('OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ target: '*', host: 'allowed.test' });
    expect(outcome('GET * HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
    expect(outcome('OPTIONS *x HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toBe('bad-request-line');
  });
});

describe('readRequestHead: malformed request lines', () => {
  it.each([
    ['a trailing space', 'GET / HTTP/1.1 '],
    ['a leading space', ' GET / HTTP/1.1'],
    ['HTTP/1.2', 'GET / HTTP/1.2'],
    ['HTTP/2.0', 'GET / HTTP/2.0'],
    ['HTTP/0.9 style', 'GET /'],
    ['a lower-case version', 'GET / http/1.1'],
    ['no version', 'GET / '],
    ['only a method', 'GET'],
    ['an empty method', ' / HTTP/1.1'],
    ['a method with a separator', 'G(T / HTTP/1.1'],
    ['a tab as separator', 'GET\t/ HTTP/1.1'],
    ['a tab in the target', 'GET /a\tb HTTP/1.1'],
    ['a non-ASCII byte in the target', 'GET /\x80 HTTP/1.1'],
    ['a DEL in the target', 'GET /\x7f HTTP/1.1'],
    ['a NUL in the target', 'GET /\x00 HTTP/1.1'],
    ['a fragment', 'GET /a#b HTTP/1.1'],
    ['a relative target', 'GET a/b HTTP/1.1'],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0'],
  ])('%s is bad-request-line', (_what, line) => {
    expect(outcome(`${line}\r\nHost: allowed.test\r\n\r\n`)).toBe('bad-request-line');
  });

  it('bytes that cannot start a request (a TLS ClientHello) are refused at once, without waiting for a line end', () => {
    expect(outcome(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))).toBe('bad-request-line');
    expect(outcome('\x00')).toBe('bad-request-line');
    expect(outcome(' ')).toBe('bad-request-line');
  });

  it('a control character in the request line is refused before the line ends', () => {
    expect(outcome('GET /\x01')).toBe('bad-request-line');
    expect(outcome('GET /\xc3\xa9')).toBe('bad-request-line');
  });
});

describe('readRequestHead: line ends', () => {
  it('accepts a bare LF ending the request line and field lines (tpws --unixeol), mixed with CRLF too', () => {
    for (const text of ['GET / HTTP/1.1\nHost: allowed.test\n\n', 'GET / HTTP/1.1\r\nHost: allowed.test\n\r\n', 'GET / HTTP/1.1\r\nHost: allowed.test\r\n\n', '\nGET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n']) {
      expect(read(`${text}GET /next`), JSON.stringify(text)).toMatchObject({ kind: 'found', consumed: text.length, head: { host: 'allowed.test', fields: [{ name: 'Host', value: 'allowed.test' }] } });
    }
  });

  it('reads several spaces between request-line parts as one (tpws --methodspace), and a tab after a value as OWS (--hosttab)', () => {
    expect(read('GET  /x HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ kind: 'found', head: { method: 'GET', target: '/x', version: 'HTTP/1.1' } });
    expect(read('GET /x   HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ kind: 'found', head: { target: '/x' } });
    expect(read('GET / HTTP/1.1\r\nHost: allowed.test\t\r\n\r\n')).toMatchObject({ kind: 'found', head: { host: 'allowed.test', fields: [{ name: 'Host', value: 'allowed.test' }] } });
    expect(read('GET / HTTP/1.1\r\nHost:\tallowed.test\r\n\r\n')).toMatchObject({ kind: 'found', head: { host: 'allowed.test' } });
  });

  it('an absolute-form target is forwarded in origin-form', () => {
    expect(read('GET http://allowed.test:8080/a?b HTTP/1.1\r\nHost: kakao.com\r\n\r\n')).toMatchObject({ kind: 'found', head: { host: 'allowed.test', port: 8080, forwardTarget: '/a?b', hostField: 'kakao.com' } });
    expect(read('GET http://allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ kind: 'found', head: { forwardTarget: '/' } });
    expect(read('GET http://allowed.test?x=1 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')).toMatchObject({ kind: 'found', head: { forwardTarget: '/?x=1' } });
  });

  it('refuses a bare CR', () => {
    expect(outcome('GET / HTTP/1.1\rHost: allowed.test\r\n\r\n')).toBe('bare-cr');
    expect(outcome('GET / HTTP/1.1\r\nX-A: a\rb\r\nHost: allowed.test\r\n\r\n')).toBe('bare-cr');
    expect(outcome('\r\rGET / HTTP/1.1\r\n')).toBe('bare-cr');
  });

  it('waits on a CR at the end of the buffer', () => {
    expect(outcome('GET / HTTP/1.1\r')).toBe('need-more');
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r')).toBe('need-more');
  });
});

describe('readRequestHead: field lines', () => {
  it.each([
    ['a space before the colon', 'Host : allowed.test'],
    ['a tab before the colon', 'Transfer-Encoding\t: chunked'],
    ['no colon', 'X-A b'],
    ['an empty name', ': b'],
    ['a separator in the name', 'X(A): b'],
    ['a non-ASCII name', 'X-\xe9: b'],
    ['a NUL in the value', 'X-A: b\x00c'],
    ['a vertical tab in the value', 'X-A: chunked\x0b'],
    ['a DEL in the value', 'X-A: b\x7f'],
    ['an ESC in the value', 'X-A: \x1b[0m'],
  ])('%s is bad-header', (_what, line) => {
    expect(outcome(`GET / HTTP/1.1\r\nHost: allowed.test\r\n${line}\r\n\r\n`)).toBe('bad-header');
  });

  it('obs-fold (a line starting with SP or HTAB) is refused', () => {
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\nX-A: b\r\n c\r\n\r\n')).toBe('obs-fold');
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\nX-A: b\r\n\tc\r\n\r\n')).toBe('obs-fold');
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n'.replace('Host', ' Host'))).toBe('obs-fold');
  });

  it('obs-fold cannot hide a second Host or a Transfer-Encoding', () => {
    expect(outcome('GET / HTTP/1.1\r\nHost: allowed.test\r\nX-A: b\r\n Host: kakao.com\r\n\r\n')).toBe('obs-fold');
    expect(outcome('POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n')).toBe('obs-fold');
  });
});

describe('readRequestHead: message length (smuggling)', () => {
  it('reads Content-Length', () => {
    const head = headOf(get('allowed.test', 'Content-Length: 42\r\n'));
    expect(head).toMatchObject({ contentLength: 42, isChunked: false });
    expect(bodyLength(head)).toBe(42);
    expect(headOf(get('allowed.test', 'content-length: 0\r\n')).contentLength).toBe(0);
    expect(headOf(get('allowed.test', 'Content-Length: 007\r\n')).contentLength).toBe(7);
  });

  it('accepts repeated Content-Length values that agree', () => {
    expect(headOf(get('allowed.test', 'Content-Length: 5\r\nContent-Length: 5\r\n')).contentLength).toBe(5);
    expect(headOf(get('allowed.test', 'Content-Length: 5, 5\r\n')).contentLength).toBe(5);
  });

  it.each([
    ['two fields that disagree', 'Content-Length: 5\r\nContent-Length: 6\r\n'],
    ['a list that disagrees', 'Content-Length: 5, 6\r\n'],
    ['a negative value', 'Content-Length: -1\r\n'],
    ['a signed value', 'Content-Length: +5\r\n'],
    ['a hex value', 'Content-Length: 0x5\r\n'],
    ['an exponent', 'Content-Length: 1e3\r\n'],
    ['a fraction', 'Content-Length: 5.0\r\n'],
    ['two numbers', 'Content-Length: 5 5\r\n'],
    ['an empty value', 'Content-Length:\r\n'],
    ['an empty list element', 'Content-Length: 5,\r\n'],
    ['a value past 2^53', 'Content-Length: 99999999999999999999\r\n'],
  ])('Content-Length with %s is bad-content-length', (_what, fields) => {
    expect(outcome(get('allowed.test', fields))).toBe('bad-content-length');
  });

  it('reads Transfer-Encoding with chunked last', () => {
    const head = headOf(get('allowed.test', 'Transfer-Encoding: chunked\r\n'));
    expect(head).toMatchObject({ isChunked: true, contentLength: null });
    expect(bodyLength(head)).toBe('chunked');
    expect(headOf(get('allowed.test', 'Transfer-Encoding: gzip, Chunked\r\n')).isChunked).toBe(true);
    expect(headOf(get('allowed.test', 'Transfer-Encoding: gzip\r\nTRANSFER-ENCODING: chunked\r\n')).isChunked).toBe(true);
    expect(headOf(get('allowed.test', 'Transfer-Encoding:\tchunked \r\n')).isChunked).toBe(true);
  });

  it.each([
    ['chunked then identity', 'Transfer-Encoding: chunked, identity\r\n'],
    ['chunked in a field before another', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n'],
    ['identity alone', 'Transfer-Encoding: identity\r\n'],
    ['gzip alone', 'Transfer-Encoding: gzip\r\n'],
    ['chunked twice', 'Transfer-Encoding: chunked, chunked\r\n'],
    ['a near-miss coding', 'Transfer-Encoding: xchunked\r\n'],
    ['a quoted coding', 'Transfer-Encoding: "chunked"\r\n'],
    ['an empty list element', 'Transfer-Encoding: , chunked\r\n'],
    ['an empty value', 'Transfer-Encoding:\r\n'],
    ['a parameter', 'Transfer-Encoding: chunked;q=1\r\n'],
  ])('Transfer-Encoding with %s is bad-transfer-encoding', (_what, fields) => {
    expect(outcome(get('allowed.test', fields))).toBe('bad-transfer-encoding');
  });

  it('Transfer-Encoding together with Content-Length is ambiguous-length, in either order', () => {
    expect(outcome(get('allowed.test', 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n'))).toBe('ambiguous-length');
    expect(outcome(get('allowed.test', 'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n'))).toBe('ambiguous-length');
    expect(outcome(get('allowed.test', 'Transfer-Encoding: chunked, identity\r\nContent-Length: 4\r\n'))).toBe('ambiguous-length');
  });

  it('Transfer-Encoding in HTTP/1.0 is refused (RFC 9112 6.1)', () => {
    expect(outcome('POST / HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n')).toBe('bad-transfer-encoding');
  });

  it('a request without Content-Length or Transfer-Encoding has no body', () => {
    expect(bodyLength(headOf(get('allowed.test')))).toBe(0);
  });
});

describe('readRequestHead: Connection', () => {
  it('HTTP/1.1 keeps the connection unless told to close', () => {
    expect(headOf(get('allowed.test')).hasConnectionClose).toBe(false);
    expect(headOf(get('allowed.test', 'Connection: close\r\n')).hasConnectionClose).toBe(true);
    expect(headOf(get('allowed.test', 'Connection: Keep-Alive, CLOSE\r\n')).hasConnectionClose).toBe(true);
    expect(headOf(get('allowed.test', 'Connection: upgrade\r\nconnection: close\r\n')).hasConnectionClose).toBe(true);
    expect(headOf(get('allowed.test', 'Connection: closed, x-close\r\n')).hasConnectionClose).toBe(false);
    expect(headOf(get('allowed.test', 'X-Connection: close\r\n')).hasConnectionClose).toBe(false);
  });

  it('HTTP/1.0 closes unless keep-alive is asked for', () => {
    expect(headOf('GET / HTTP/1.0\r\nHost: a.test\r\n\r\n').hasConnectionClose).toBe(true);
    expect(headOf('GET / HTTP/1.0\r\nHost: a.test\r\nConnection: Keep-Alive\r\n\r\n').hasConnectionClose).toBe(false);
    expect(headOf('GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive, close\r\n\r\n').hasConnectionClose).toBe(true);
  });
});

describe('readRequestHead: incomplete heads, pipelining and the size cap', () => {
  const heads = [
    get('TALK-Pilsner.Kakao.COM.:8080', 'User-Agent: split\r\n'),
    'GET http://talk-pilsner.kakao.com/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\n\r\n',
    'CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n',
    '\r\nPOST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n',
  ];

  it.each(heads)('every prefix of a complete head is need-more, then the head is found: %j', (text) => {
    const buf = bytes(text);
    for (let n = 0; n < buf.length; n++) expect(read(buf.subarray(0, n)), `prefix of ${n} bytes`).toEqual({ kind: 'need-more' });
    expect(read(buf)).toMatchObject({ kind: 'found', consumed: buf.length });
  });

  it.each(heads)('split into two segments at every position, the head reads the same: %j', (text) => {
    const buf = bytes(text);
    const whole = read(buf);
    for (let at = 1; at < buf.length; at++) {
      let buffered = Buffer.alloc(0);
      const results: RequestHeadResult[] = [];
      for (const segment of [buf.subarray(0, at), buf.subarray(at)]) {
        buffered = Buffer.concat([buffered, segment]);
        results.push(read(buffered));
      }
      expect(results).toEqual([{ kind: 'need-more' }, whole]);
    }
  });

  it('an invalid head gives need-more or the same answer at every prefix', () => {
    for (const text of [
      'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nX : y\r\nHost: a.test\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n',
    ]) {
      const whole = expectPrefixesConsistent(bytes(text));
      expect(whole.kind, text).toBe('invalid');
    }
  });

  it('pipelined requests: consumed stops at the end of the first head', () => {
    const first = get('allowed.test');
    const second = get('talk-pilsner.kakao.com', 'Connection: close\r\n');
    const buf = bytes(first + second);
    const one = read(buf);
    expect(one).toMatchObject({ kind: 'found', consumed: first.length, head: { host: 'allowed.test', hasConnectionClose: false } });
    if (one.kind !== 'found') return;
    expect(read(buf.subarray(one.consumed))).toMatchObject({ kind: 'found', consumed: second.length, head: { host: 'talk-pilsner.kakao.com', hasConnectionClose: true } });
  });

  it('pipelined after a body: bodyLength says where the next request starts, even when the body looks like a request', () => {
    const hidden = get('talk-pilsner.kakao.com');
    const first = `POST /body HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: ${hidden.length}\r\n\r\n`;
    const next = 'GET /after HTTP/1.1\r\nHost: other.test\r\n\r\n';
    const buf = bytes(first + hidden + next);
    const one = read(buf);
    if (one.kind !== 'found') throw new Error(one.kind);
    expect(one.consumed).toBe(first.length);
    const length = bodyLength(one.head);
    expect(length).toBe(hidden.length);
    expect(read(buf.subarray(one.consumed + (length as number)))).toMatchObject({ kind: 'found', head: { target: '/after', host: 'other.test' } });
  });

  it('an incomplete head shorter than the cap is need-more; one that reaches the cap is head-too-large (431)', () => {
    const text = get('allowed.test', `X-Fill: ${'a'.repeat(200)}\r\n`);
    const cap = 100;
    expect(outcome(text.slice(0, cap - 1), cap)).toBe('need-more');
    expect(outcome(text.slice(0, cap), cap)).toBe('head-too-large');
    expect(outcome(text, cap)).toBe('head-too-large');
    expect(outcome(get('allowed.test', `X-Fill: ${'a'.repeat(20_000)}\r\n`))).toBe('head-too-large');
  });

  it('a head of exactly maxHeadBytes bytes is read; one byte more is too large', () => {
    const text = get('allowed.test', 'X-Fill: abc\r\n');
    expect(read(text, text.length)).toMatchObject({ kind: 'found', consumed: text.length });
    expect(outcome(text, text.length - 1)).toBe('head-too-large');
  });

  it('the cap applies to the head only: a pipelined request or body after it does not count', () => {
    const text = get('allowed.test');
    expect(read(text + text + 'x'.repeat(500), text.length)).toMatchObject({ kind: 'found', consumed: text.length });
  });

  it('an empty buffer and leading empty lines are need-more', () => {
    expect(read(Buffer.alloc(0))).toEqual({ kind: 'need-more' });
    expect(read('\r\n\r\n')).toEqual({ kind: 'need-more' });
  });

  it('endless empty lines before a request reach the cap', () => {
    expect(outcome('\r\n'.repeat(60), 100)).toBe('head-too-large');
  });
});

describe('readRequestHead: properties', () => {
  const fragments = fc.constantFrom(
    'GET ',
    'CONNECT ',
    'OPTIONS ',
    '/',
    '*',
    'http://',
    'a.test',
    '[::1]',
    ':443',
    ' HTTP/1.1',
    ' HTTP/1.0',
    '\r\n',
    '\r',
    '\n',
    ' ',
    '\t',
    'Host: ',
    'Host:',
    'Content-Length: ',
    'Transfer-Encoding: ',
    'chunked',
    'Connection: close',
    '5',
    ', ',
    '\x00',
    '\xff',
    '@',
    '%',
  );
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.array(fc.oneof(fragments, fc.string({ maxLength: 4 })), { maxLength: 40 }).map((parts) => bytes(parts.join(''))),
  );

  it('never throws, and consumed never exceeds the buffer or the cap', () => {
    fc.assert(
      fc.property(input, fc.integer({ min: 1, max: 400 }), (buf, cap) => {
        const result = readRequestHead(buf, { maxHeadBytes: cap });
        if (result.kind === 'found' || result.kind === 'no-name') {
          expect(result.consumed).toBeLessThanOrEqual(buf.length);
          expect(result.consumed).toBeLessThanOrEqual(cap);
          expect(result.consumed).toBeGreaterThan(0);
        }
        if (result.kind === 'found') {
          expect(result.head.headerBytes).toBe(result.consumed);
          expect(result.head.host).not.toBeNull();
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('more bytes never change an answer already given', () => {
    fc.assert(
      fc.property(input, fc.integer({ min: 1, max: 400 }), (buf, cap) => {
        expectPrefixesConsistent(buf, cap);
      }),
      { numRuns: 300 },
    );
  });

  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  const hostName = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z]{2,6}$/)).map(([labels, tld]) => [...labels, tld].join('.'));
  const mixCase = (name: string, flips: readonly boolean[]): string => name.replace(/[a-z]/g, (c, i: number) => (flips[i % Math.max(1, flips.length)] === true ? c.toUpperCase() : c));
  const fieldLine = fc
    .tuple(fc.stringMatching(/^X-[A-Za-z0-9-]{1,10}$/), fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/))
    .map(([name, value]) => `${name}: ${value}\r\n`);

  it('a generated valid request reads back its host and port, and reads the same from every prefix', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('GET', 'POST', 'HEAD', 'DELETE', 'PATCH'),
        hostName,
        fc.array(fc.boolean(), { maxLength: 8 }),
        fc.boolean(),
        fc.option(fc.integer({ min: 1, max: 65_535 })),
        fc.boolean(),
        fc.array(fieldLine, { maxLength: 4 }),
        fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,30}$/),
        (method, name, flips, hasTrailingDot, port, isAbsolute, fields, path) => {
          const authority = `${mixCase(name, flips)}${hasTrailingDot ? '.' : ''}${port === null ? '' : `:${port}`}`;
          const target = isAbsolute ? `http://${authority}${path}` : path;
          const text = `${method} ${target} HTTP/1.1\r\n${fields.join('')}Host: ${isAbsolute ? 'other.test' : authority}\r\n\r\n`;
          const buf = bytes(text);
          const result = expectPrefixesConsistent(buf);
          expect(result).toMatchObject({ kind: 'found', consumed: buf.length, head: { method, target, host: name, port, isAbsoluteForm: isAbsolute } });
        },
      ),
      { numRuns: 300 },
    );
  });
});

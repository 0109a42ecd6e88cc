import { describe, expect, it } from 'vitest';
import { forwardedHead } from '../../../../src/proxy/act/request-out.js';
import { readRequestHead, type RequestHead } from '../../../../src/proxy/inspect/request-head.js';

function head(text: string): RequestHead {
  const read = readRequestHead(Buffer.from(text, 'latin1'), { maxHeadBytes: 16_384 });
  if (read.kind !== 'found') throw new Error(`not a head: ${JSON.stringify(read)}`);
  return read.head;
}

const out = (text: string): string => forwardedHead(head(text)).bytes.toString('latin1');

describe('forwardedHead: the canonical head, never the client bytes', () => {
  it('writes CRLF, single spaces, Host first, the other fields in order with trimmed values', () => {
    expect(out('GET  /a?b   HTTP/1.1\nUser-Agent:  curl \nHost: Allowed.Test.\t\nAccept: */*\n\n')).toBe('GET /a?b HTTP/1.1\r\nHost: allowed.test\r\nUser-Agent: curl\r\nAccept: */*\r\n\r\n');
  });

  it('absolute-form: origin-form target, Host from the authority with its port; the client Host is gone', () => {
    expect(out('GET http://allowed.test:8080/x HTTP/1.1\r\nHost: kakao.com\r\n\r\n')).toBe('GET /x HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n');
    expect(out('GET http://[2001:db8::1]/ HTTP/1.1\r\nHost: x\r\n\r\n')).toBe('GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n');
  });

  it('framing fields come from the framing that was read: one Content-Length, the codings of Transfer-Encoding', () => {
    expect(out('POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n')).toBe('POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n');
    expect(out('POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding:\tCHUNKED\r\n\r\n')).toBe('POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n');
  });

  it('h2c is taken out of Upgrade with HTTP2-Settings and its Connection options; another protocol stays an upgrade', () => {
    const h2c = forwardedHead(head('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAM\r\n\r\n'));
    expect(h2c).toEqual({ bytes: Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n'), isUpgrade: false });
    const both = forwardedHead(head('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\nHTTP2-Settings: AAM\r\n\r\n'));
    expect(both).toEqual({ bytes: Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'), isUpgrade: true });
  });

  it('drops Proxy-Connection, and keeps bytes above 0x7f in values as they came', () => {
    expect(out('GET / HTTP/1.1\r\nHost: a.test\r\nProxy-Connection: keep-alive\r\nX-Name: caf\xe9\r\n\r\n')).toBe('GET / HTTP/1.1\r\nHost: a.test\r\nX-Name: caf\xe9\r\n\r\n');
  });
});

import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';
import { startNginx, type Nginx } from '../support/nginx.js';
import { startRecordingUpstream, type RecordingUpstream } from '../support/recording-upstream.js';

/**
 * What the HTTP listener forwards is exactly what it judged: every head is re-written from what
 * was parsed (never the client's bytes), an absolute-form request goes out with its own
 * authority as Host, an Upgrade holds everything after it until the server has answered, h2c
 * never leaves, and the smuggling corpus below either reaches the upstream as the requests that
 * were judged or is refused. The upstream is an independent parser (Node's llhttp) recording
 * every byte it gets, and nginx for the lenient forms.
 */
const execFileAsync = promisify(execFile);
const BLOCKED = 'talk-pilsner.kakao.com';

let dir = '';
let upstream: RecordingUpstream;
let nginx: Nginx;
let gateway: GatewayProcess;

/** Sends `bytes`, collects the answer until the gateway closes or `quietMs` pass without a byte. */
function exchange(bytes: string | Buffer, quietMs = 400): Promise<{ text: string; isClosed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(gateway.httpPort, '127.0.0.1');
    let text = '';
    let timer = setTimeout(() => finish(false), quietMs);
    const finish = (isClosed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, isClosed });
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), quietMs);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => finish(true));
    socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}

const statuses = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

function seenSince(before: number): RecordingUpstream['requests'] {
  return upstream.requests.slice(before);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-forwarding-'));
  upstream = await startRecordingUpstream();
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await execFileAsync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=allowed.test', '-days', '1', '-keyout', key, '-out', cert]);
  nginx = await startNginx(join(dir, 'nginx'), [{ name: 'web', tls: false, keepaliveSeconds: 60 }], { cert, key });
  const config = await writeGatewayConfig(dir, {
    upstream: '127.0.0.1:1',
    proxy: { httpUpstreamPort: upstream.port, lines: ['hosts: { allowed.test: 127.0.0.1, other.test: 127.0.0.1 }', 'allowedUpstreamNetworks: [127.0.0.0/8]'] },
  });
  gateway = await startGateway(config);
});

afterAll(async () => {
  expect(await gateway.stop()).toBe(0);
  await nginx.stop();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
  expect(gateway.logs.filter((l) => typeof l.level === 'number' && l.level >= 50)).toEqual([]);
});

describe('what reaches the upstream is what was judged', () => {
  it("absolute-form: decided on the URI's authority and forwarded in origin-form with Host set to it; the client's Host never arrives", async () => {
    const before = upstream.requests.length;
    const { text } = await exchange(`GET http://allowed.test:${upstream.port}/x?y=1 HTTP/1.1\r\nHost: kakao.com\r\n\r\n`);
    expect(statuses(text)).toEqual([200]);
    const [seen] = seenSince(before);
    expect(seen?.url).toBe('/x?y=1');
    expect(seen?.headers.host).toBe(`allowed.test:${upstream.port}`);
    expect(seen?.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host')).toHaveLength(1);
    expect(upstream.received.join('')).not.toContain('kakao.com');
  });

  it('every head is re-written: bare LF, repeated spaces and a tab after Host arrive as one canonical head', async () => {
    const before = upstream.requests.length;
    const connectionsBefore = upstream.received.length;
    const { text } = await exchange(`GET  /lf   HTTP/1.1\nHost: allowed.test\t\nX-Thing:   value  \nContent-Length: 3\n\nabc`);
    expect(statuses(text)).toEqual([200]);
    expect(seenSince(before)).toMatchObject([{ method: 'GET', url: '/lf', body: 'abc', headers: { host: 'allowed.test', 'x-thing': 'value' } }]);
    expect(upstream.received[connectionsBefore]).toBe('GET /lf HTTP/1.1\r\nHost: allowed.test\r\nX-Thing: value\r\nContent-Length: 3\r\n\r\nabc');
  });

  it('Upgrade answered 404, with a request for a blocked name pipelined behind it: that request is judged (451) and never reaches the upstream', async () => {
    const before = upstream.requests.length;
    const { text } = await exchange(
      'GET /chat HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n' + `GET /hidden HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`,
    );
    expect(statuses(text)).toEqual([404, 451]);
    expect(seenSince(before).map((r) => r.url)).toEqual(['/chat']);
    expect(upstream.received.join('')).not.toContain('/hidden');
  });

  it('Upgrade answered 101: the bytes sent behind the request are held, then go to the new protocol', async () => {
    const { text } = await exchange('GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe-1');
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*\r\n\r\necho:frame-1$/);
  });

  it('h2c never reaches the upstream: the Upgrade, its HTTP2-Settings and its Connection options are taken out', async () => {
    const before = upstream.requests.length;
    const connectionsBefore = upstream.received.length;
    const { text } = await exchange('GET /plain HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    expect(statuses(text)).toEqual([200]);
    const [seen] = seenSince(before);
    expect(seen?.headers.upgrade).toBeUndefined();
    expect(seen?.headers['http2-settings']).toBeUndefined();
    expect(seen?.headers.connection).toBeUndefined();
    expect(upstream.received[connectionsBefore]).not.toMatch(/h2c|HTTP2-Settings/i);
  });

  it('the 451 page names the app by its display name', async () => {
    const { text } = await exchange('GET / HTTP/1.1\r\nHost: legy-jp.line-apps.com\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 451 /);
    expect(text).toContain('This service (LINE) is blocked');
  });
});

describe('lenient only where unambiguous, against nginx', () => {
  it.each([
    ['bare LF line ends (tpws --unixeol)', (port: number) => `GET /small HTTP/1.1\nHost: allowed.test:${port}\nConnection: close\n\n`],
    ['two spaces after the method (tpws --methodspace)', (port: number) => `GET  /small HTTP/1.1\r\nHost: allowed.test:${port}\r\nConnection: close\r\n\r\n`],
    ['a tab after the Host value (tpws --hosttab)', (port: number) => `GET /small HTTP/1.1\r\nHost: allowed.test:${port}\t\r\nConnection: close\r\n\r\n`],
  ])('%s: 200 from nginx through the gateway', async (_what, request) => {
    const { text } = await exchange(request(nginx.ports.web!), 1_000);
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  });

  it('an Upgrade nginx declines (it answers 200): the request pipelined behind it is then read, judged and answered', async () => {
    const port = nginx.ports.web!;
    const { text } = await exchange(`GET /small HTTP/1.1\r\nHost: allowed.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /small HTTP/1.1\r\nHost: allowed.test:${port}\r\nConnection: close\r\n\r\n`, 1_000);
    expect(statuses(text)).toEqual([200, 200]);
  });
});

/**
 * Requests built to be read two ways. For each: the upstream must never see a request the
 * gateway did not judge — no `/smuggled` path, no blocked name — and every request it does see
 * is one the client got an answer for; otherwise the gateway refuses the connection.
 */
const CORPUS: [string, string][] = [
  ['CL.TE: Content-Length and Transfer-Encoding together', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 49\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['TE.CL: Transfer-Encoding first, then Content-Length', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2d\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n\r\n0\r\n\r\n`],
  ['TE.TE: a space before the colon', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['TE.TE: chunked, then an unknown coding', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['TE.TE: xchunked', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['TE.TE: chunked in an obs-fold line', `POST / HTTP/1.1\r\nHost: allowed.test\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['TE.TE: upper-case CHUNKED (the same coding)', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['TE in HTTP/1.0', `POST / HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['two different Content-Lengths', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\nContent-Length: 46\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['a Content-Length list that disagrees', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0, 46\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['a signed Content-Length', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: +46\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['the same Content-Length twice (one length: forwarded as one field)', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['a bare LF inside a chunk-size line', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['a bare LF after chunk data', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['a bare LF in the trailers', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['an oversize chunk size', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['a chunk extension hiding a CR', `POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=\ry\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
  ['obs-fold continuing Host', `GET /smuggled HTTP/1.1\r\nHost: allowed.test\r\n ${BLOCKED}\r\n\r\n`],
  ['two Host fields', `GET /smuggled HTTP/1.1\r\nHost: allowed.test\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['a bare CR between fields', `GET /smuggled HTTP/1.1\r\nHost: allowed.test\rHost: ${BLOCKED}\r\n\r\n`],
  ['a request hidden in a body', `POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 54\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: talk-pilsner.kakao.com\r\n\r\n`],
  ['a blocked request pipelined after an allowed one', `GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /after HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['Upgrade with a pipelined request to a blocked name', `GET /up HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /after HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['h2c upgrade with a prior-knowledge preface behind it', `GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`],
  ['absolute-form fronting a blocked Host', `GET http://allowed.test/front HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`],
  ['absolute-form to a blocked authority behind an allowed Host', `GET http://${BLOCKED}/smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n`],
];

describe('the smuggling corpus, through the live path', () => {
  it.each(CORPUS)('%s', async (_what, payload) => {
    const before = upstream.requests.length;
    const { text } = await exchange(payload);
    await sleep(50);
    const seen = seenSince(before);
    for (const request of seen) {
      expect(request.url).not.toContain('smuggled');
      expect(String(request.headers.host)).not.toContain('kakao');
    }
    // Each request the upstream read was answered to the client, in order; nothing else came from it.
    const fromUpstream = statuses(text).filter((status) => status === 200 || status === 404);
    expect(fromUpstream.length).toBe(seen.length);
  });
});

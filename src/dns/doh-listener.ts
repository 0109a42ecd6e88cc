import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Logger } from '../observability/logger.js';
import type { DnsClient } from './chain.js';
import { MAX_MESSAGE_BYTES, type DnsHandler, type StreamLimits } from './listeners.js';
import { walkResponse } from './message.js';
import { HEADER_BYTES, TYPE } from './wire.js';

/** One exchange, whichever HTTP version carried it (the HTTP/2 compatibility API mirrors HTTP/1). */
type DohRequest = IncomingMessage | Http2ServerRequest;
type DohResponse = ServerResponse | Http2ServerResponse;

export interface DohListenerOptions {
  path: string;
  cert: Buffer;
  key: Buffer;
  /** idleTimeoutMs ends idle connections; maxConnections caps them; maxPipelined caps HTTP/2 streams per connection. */
  limits: StreamLimits;
}

const DNS_MESSAGE = 'application/dns-message';

/**
 * DNS over HTTPS (RFC 8484) on one TLS listener that speaks HTTP/2 and HTTP/1.1, chosen by
 * ALPN (a client offering no ALPN gets HTTP/1.1): GET with ?dns=<base64url> and POST with an
 * application/dns-message body, on one path. Answers carry Cache-Control from their smallest TTL.
 */
export function createDohListener(handler: DnsHandler, options: DohListenerOptions, log: Logger): Http2SecureServer {
  const { limits } = options;
  const server = createSecureServer({
    cert: options.cert,
    key: options.key,
    allowHTTP1: true,
    settings: { maxConcurrentStreams: limits.maxPipelined },
    // A DNS message fits in 64 KiB; a session holding more than this is not asking DNS questions.
    maxSessionMemory: 4,
    maxHeaderListPairs: 64,
  });
  server.on('request', (req: DohRequest, res: DohResponse) => {
    serveDohRequest(req, res, handler, options.path, log);
  });
  server.maxConnections = limits.maxConnections;
  // Idle HTTP/2 sessions and HTTP/1.1 sockets are destroyed after this long without traffic;
  // a query the chain drops (rate limit "drop") is answered 429 at once, so nothing waits on it.
  server.setTimeout(limits.idleTimeoutMs);
  server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'doh handshake failed'));
  server.on('sessionError', (err: Error) => log.debug({ err: err.message }, 'doh session error'));
  return server;
}

function serveDohRequest(req: DohRequest, res: DohResponse, handler: DnsHandler, path: string, log: Logger): void {
  const url = new URL(req.url ?? '/', 'https://doh.invalid');
  if (url.pathname !== path) return fail(res, 404);
  const client: DnsClient = { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0, transport: 'doh', channel: res };
  const answer = (query: Buffer): void => {
    // The chain answers nothing to a response (QR=1) or a packet shorter than a header: over
    // HTTP that would leave the request hanging, so it gets 400 here.
    if (query.length < HEADER_BYTES || (query[2]! & 0x80) !== 0) return fail(res, 400);
    try {
      handler(query, client, (message) => {
        if (res.headersSent || res.destroyed) return; // the client went away while upstream answered
        if (message === null) return fail(res, 429); // dropped by the rate limit
        send(res, 200, { 'content-type': DNS_MESSAGE, 'content-length': String(message.length), 'cache-control': `max-age=${minTtl(message)}` }, message);
      });
    } catch (e: unknown) {
      log.error({ err: e instanceof Error ? e.message : String(e) }, 'dns handler threw (a bug)');
      if (!res.headersSent) fail(res, 500);
    }
  };
  if (req.method === 'GET') {
    const param = url.searchParams.get('dns');
    if (param === null || !/^[A-Za-z0-9_-]+$/.test(param)) return fail(res, 400);
    const query = Buffer.from(param, 'base64url');
    if (query.length < HEADER_BYTES || query.length > MAX_MESSAGE_BYTES) return fail(res, 400);
    return answer(query);
  }
  if (req.method !== 'POST') return fail(res, 405, { allow: 'GET, POST' });
  if (mediaType(req.headers['content-type']) !== DNS_MESSAGE) return fail(res, 415);
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_MESSAGE_BYTES) {
      fail(res, 413);
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    if (size <= MAX_MESSAGE_BYTES && !res.headersSent) answer(Buffer.concat(chunks));
  });
  req.on('error', () => req.destroy());
}

/** The media type without parameters, lower-cased ("Application/DNS-Message; x=1" is ours too). */
function mediaType(header: string | undefined): string | undefined {
  return header?.split(';', 1)[0]?.trim().toLowerCase();
}

function send(res: DohResponse, status: number, headers: Record<string, string>, body: Buffer | string): void {
  res.statusCode = status;
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.end(body);
}

function fail(res: DohResponse, status: number, headers: Record<string, string> = {}): void {
  send(res, status, { 'content-type': 'text/plain', ...headers }, `${status}\n`);
}

/** Smallest TTL of the answer's records (OPT aside), for the DoH Cache-Control header (RFC 8484 5.1). */
function minTtl(message: Buffer): number {
  const records = walkResponse(message)?.records.filter((r) => r.type !== TYPE.OPT) ?? [];
  return records.length === 0 ? 0 : Math.min(...records.map((r) => r.ttl));
}

import { connect as connectHttp2, constants as HTTP2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { TlsDialer, settle, type ChannelFailure, type ChannelOutcome, type ChannelQuery, type ChannelSettings, type ChannelTarget, type DialedSocket, type UpstreamChannel } from './upstream-channel.js';

const DNS_MESSAGE = 'application/dns-message';
const MAX_MESSAGE_BYTES = 65_535;

interface DohQuery extends ChannelQuery {
  stream: ClientHttp2Stream | null;
}

/** One HTTP/2 session over its TLS connection. */
interface DohSession {
  readonly session: ClientHttp2Session;
  readonly dialed: DialedSocket;
  /** Streams answered: a session that answered before is one the server may close while idle. */
  answered: number;
}

/**
 * DNS over HTTPS to one upstream (RFC 8484): POST application/dns-message over one long-lived
 * HTTP/2 session, each query its own stream, closed after idleTimeoutMs without traffic and
 * opened again on the next query. Anything but 200 with a DNS message is a failed attempt.
 */
export class DohChannel implements UpstreamChannel {
  private current: DohSession | null = null;
  private readonly dialer: TlsDialer;
  /** The :authority the server sees: the certificate's name, not the address dialled. */
  private readonly authority: string;
  private readonly path: string;
  private isClosed = false;

  constructor(
    target: ChannelTarget & { path: string },
    private readonly settings: ChannelSettings,
  ) {
    this.dialer = new TlsDialer(target, settings, 'h2');
    this.authority = `https://${target.name.includes(':') ? `[${target.name}]` : target.name}:${target.port}`;
    this.path = target.path;
  }

  send(query: Buffer, done: (outcome: ChannelOutcome) => void): () => void {
    const entry: DohQuery = { query, done, hasRetried: false, isSettled: false, stream: null };
    this.dispatch(entry);
    return () => {
      entry.isSettled = true;
      entry.stream?.close(HTTP2.NGHTTP2_CANCEL);
    };
  }

  close(): void {
    this.isClosed = true;
    this.current?.session.destroy();
    this.current = null;
  }

  private dispatch(entry: DohQuery): void {
    if (this.isClosed) return settle(entry, { kind: 'network', cause: 'the upstream pool was closed' });
    const holder = this.current ?? this.open();
    let stream: ClientHttp2Stream;
    try {
      stream = holder.session.request({
        [HTTP2.HTTP2_HEADER_METHOD]: 'POST',
        [HTTP2.HTTP2_HEADER_PATH]: this.path,
        [HTTP2.HTTP2_HEADER_CONTENT_TYPE]: DNS_MESSAGE,
        [HTTP2.HTTP2_HEADER_ACCEPT]: DNS_MESSAGE,
        [HTTP2.HTTP2_HEADER_CONTENT_LENGTH]: String(entry.query.length),
      });
    } catch (e: unknown) {
      // The session is going away (GOAWAY, stream IDs used up): once more on a new one.
      this.retire(holder);
      return this.retryOrSettle(entry, { kind: 'network', cause: e }, true);
    }
    entry.stream = stream;
    let status = 0;
    let contentType = '';
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('response', (headers) => {
      status = Number(headers[HTTP2.HTTP2_HEADER_STATUS]);
      contentType = String(headers[HTTP2.HTTP2_HEADER_CONTENT_TYPE] ?? '');
    });
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_MESSAGE_BYTES) {
        stream.close(HTTP2.NGHTTP2_CANCEL);
        return settle(entry, { kind: 'malformed', cause: `a response body over ${MAX_MESSAGE_BYTES} bytes` });
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      holder.answered++;
      if (status !== 200) return settle(entry, { kind: 'network', cause: `HTTP status ${status}` });
      if (contentType.split(';', 1)[0]?.trim().toLowerCase() !== DNS_MESSAGE) return settle(entry, { kind: 'malformed', cause: `content-type "${contentType}"` });
      settle(entry, { message: Buffer.concat(chunks, size) });
    });
    stream.on('error', () => undefined); // the outcome is settled on 'close'
    stream.on('close', () => {
      if (entry.isSettled) return;
      const failure = holder.dialed.failure ?? { kind: 'network' as const, cause: `stream closed (code ${stream.rstCode})` };
      // Refused, or cut by the session closing before any answer: worth once more elsewhere.
      const isRetryable = status === 0 && (stream.rstCode === HTTP2.NGHTTP2_REFUSED_STREAM || (holder.answered > 0 && failure.kind === 'network'));
      this.retryOrSettle(entry, failure, isRetryable);
    });
    stream.end(entry.query);
  }

  private retryOrSettle(entry: DohQuery, failure: ChannelFailure, isRetryable: boolean): void {
    if (isRetryable && !entry.hasRetried && !entry.isSettled) {
      entry.hasRetried = true;
      this.dispatch(entry);
      return;
    }
    settle(entry, failure);
  }

  private open(): DohSession {
    const dialed = this.dialer.dial();
    const session = connectHttp2(this.authority, { createConnection: () => dialed.socket, settings: { enablePush: false } });
    const holder: DohSession = { session, dialed, answered: 0 };
    this.current = holder;
    session.unref(); // the pool never holds the process open
    const handshakeTimer = setTimeout(() => {
      dialed.failure ??= { kind: 'timeout', cause: `no TLS session within ${this.settings.handshakeTimeoutMs} ms` };
      session.destroy();
    }, this.settings.handshakeTimeoutMs);
    handshakeTimer.unref();
    session.once('connect', () => clearTimeout(handshakeTimer));
    session.setTimeout(this.settings.idleTimeoutMs, () => {
      this.retire(holder);
      session.close();
    });
    session.on('error', (err: Error) => {
      dialed.failure ??= { kind: 'network', cause: err };
    });
    session.on('goaway', () => this.retire(holder));
    session.on('close', () => {
      clearTimeout(handshakeTimer);
      this.retire(holder);
    });
    return holder;
  }

  private retire(holder: DohSession): void {
    if (this.current === holder) this.current = null;
  }
}

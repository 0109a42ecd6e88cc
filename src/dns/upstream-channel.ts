import { checkServerIdentity, connect as connectTls, createSecureContext, rootCertificates, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import type { UpstreamErrorKind } from './upstream-types.js';

/** What one query over an encrypted channel came to: the reply's bytes, or why there is none. */
export type ChannelOutcome = { message: Buffer } | { kind: UpstreamErrorKind; cause: unknown };

/**
 * An encrypted upstream (DoT, DoH) as the pool sees it: send a query, get one outcome. The
 * channel owns its connection: opened on first use, reused and pipelined, reopened after it
 * closes. The pool checks every reply (ID, question, 0x20 case) as it does plain ones.
 */
export interface UpstreamChannel {
  /**
   * Sends `query`, whose ID the channel may change in place to one free on its connection;
   * `done` is called once, unless the returned function cancels the query first.
   */
  send(query: Buffer, done: (outcome: ChannelOutcome) => void): () => void;
  /** Closes the connection; queries still out end with kind 'network'. */
  close(): void;
}

export interface ChannelTarget {
  host: string;
  port: number;
  /** What the certificate must name (a host name, or an IP for an IP certificate). */
  name: string;
}

export interface ChannelSettings {
  /** Extra PEM CA certificates trusted beside the built-in roots; null: the roots alone. */
  ca: string | null;
  /** TCP connect plus TLS handshake, ms: a connection not ready by then is given up. */
  handshakeTimeoutMs: number;
  /** A connection with nothing in flight for this long is closed, ms. */
  idleTimeoutMs: number;
}

/**
 * One query's way through a channel. A query sent on a connection that had already answered,
 * and that closed before answering this one (the server's idle close racing our write), is
 * sent once more on a fresh connection.
 */
export interface ChannelQuery {
  readonly query: Buffer;
  readonly done: (outcome: ChannelOutcome) => void;
  hasRetried: boolean;
  isSettled: boolean;
}

export function settle(entry: ChannelQuery, outcome: ChannelOutcome): void {
  if (entry.isSettled) return;
  entry.isSettled = true;
  entry.done(outcome);
}

/** Why a connection failed, as the pool counts it. */
export interface ChannelFailure {
  kind: UpstreamErrorKind;
  cause: unknown;
}

/** A connection being made or in use, and the first failure seen on it. */
export interface DialedSocket {
  readonly socket: TLSSocket;
  failure: ChannelFailure | null;
}

/**
 * TLS connections to the target: SNI is the name (unless it is an IP), the certificate must
 * name it, the session ticket of the last connection is offered back (TLS resumption). The
 * first error on a socket is recorded, before anyone else hears of it, as 'tls' (handshake or
 * certificate refused) or 'network'.
 */
export class TlsDialer {
  private ticket: Buffer | undefined;
  private readonly options: ConnectionOptions;

  constructor(target: ChannelTarget, settings: ChannelSettings, alpn: string) {
    this.options = {
      host: target.host,
      port: target.port,
      ...(isIP(target.name) === 0 ? { servername: target.name } : {}),
      checkServerIdentity: (_host, cert) => checkServerIdentity(target.name, cert),
      ALPNProtocols: [alpn],
      // Built once: a `ca` option on every connect would parse the whole root store again, and
      // the memory of each of those contexts stays with the process (about 1 MiB a connection).
      ...(settings.ca === null ? {} : { secureContext: createSecureContext({ ca: [...rootCertificates, settings.ca] }) }),
    };
  }

  dial(): DialedSocket {
    const socket = connectTls({ ...this.options, ...(this.ticket === undefined ? {} : { session: this.ticket }) });
    const dialed: DialedSocket = { socket, failure: null };
    socket.on('error', (err: NodeJS.ErrnoException) => {
      dialed.failure ??= { kind: isTlsFailure(err) ? 'tls' : 'network', cause: err };
    });
    socket.on('session', (ticket: Buffer) => (this.ticket = ticket));
    socket.setNoDelay(true);
    return dialed;
  }
}

/**
 * TLS and certificate errors: Node's ERR_TLS_* and ERR_SSL_* codes, and OpenSSL's certificate
 * verification codes (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE...); errno codes
 * (ECONNRESET, ETIMEDOUT...) are the network's.
 */
export function isTlsFailure(err: NodeJS.ErrnoException): boolean {
  const code = err.code ?? '';
  return /^ERR_(TLS|SSL)_/.test(code) || (/^[A-Z0-9_]+$/.test(code) && !code.startsWith('E'));
}

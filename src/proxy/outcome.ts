import type { Socket } from 'node:net';
import type { Decision, DecisionQuery } from '../policy/index.js';
import type { DownstreamForwarder } from './act/forward.js';
import type { TlsBlockAction } from './act/refuse.js';
import type { ProxyResult } from './events.js';

/**
 * What a handler hands back to the connection's owner once it has inspected and decided. The
 * handler never closes, times out or releases anything itself: the owner acts on the outcome
 * and ends the connection, once, whatever ends first.
 */
export type Outcome = Refuse | Tunnel | Stream;

/** How a refused connection is ended. */
export type RefuseAction =
  /** The TLS handshake_failure alert, then FIN. */
  | 'tls-alert'
  /** A TCP reset, with nothing said (a firewall's reject; `blockAction: rst`). */
  | 'reset'
  /** Closed without a word (the client is gone, or never spoke to anyone). */
  | 'close'
  /** These bytes (an HTTP status page), then FIN. */
  | Buffer;

export interface Refuse {
  kind: 'refuse';
  /** Counted in portcullis_proxy_connections_total; null when there is nothing to count (the client left). */
  result: ProxyResult | null;
  action: RefuseAction;
  /** A policy block: logged and handed to the decisions log as well as counted. */
  blockedBy?: { decision: Decision; name: string | null };
}

/**
 * Splice the client with a connected upstream (adopted by the connection when it was dialled).
 * What the client already sent, still in the connection's reader (the ClientHello a handler
 * peeked at, bytes after a CONNECT head), is replayed upstream first, unchanged.
 */
export interface Tunnel {
  kind: 'tunnel';
  upstream: Socket;
  /** Dialled with this forwarder as its reader (server-to-client bytes), or null: read by 'data'. */
  forwarder: DownstreamForwarder | null;
  /** What the tunnel was allowed on: decided again on every policy change. */
  judged: readonly DecisionQuery[];
  /** Counted when the tunnel starts; null when the request that led here was counted already. */
  result: 'forwarded' | null;
}

/**
 * Plain HTTP/1.x: the handler keeps reading, deciding and forwarding request by request (and
 * may change upstream) until the conversation ends, then says how it ended.
 */
export interface Stream {
  kind: 'stream';
  stream: InspectedStream;
}

export interface InspectedStream {
  run(): Promise<Refuse | Tunnel | End>;
  /** A policy change blocks what the stream is talking to now: it ends as HTTP allows. */
  cut(decision: Decision): void;
}

/** The conversation is over: the client gets FIN after whatever was queued for it. */
export interface End {
  kind: 'end';
}

export function refuse(result: ProxyResult | null, action: RefuseAction, blockedBy?: { decision: Decision; name: string | null }): Refuse {
  return blockedBy === undefined ? { kind: 'refuse', result, action } : { kind: 'refuse', result, action, blockedBy };
}

/** The configured way to refuse a TLS client. */
export function tlsAction(blockAction: TlsBlockAction): RefuseAction {
  return blockAction === 'rst' ? 'reset' : 'tls-alert';
}

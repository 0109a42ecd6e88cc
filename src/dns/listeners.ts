import type { RemoteInfo } from 'node:dgram';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { UDPServer } from 'dns2';
import type { Logger } from '../observability/logger.js';
import type { DnsClient, DnsReply, DnsTransport } from './chain.js';

export type DnsHandler = (queryBuf: Buffer, client: DnsClient, reply: DnsReply) => void;

export interface StreamLimits {
  /** Idle time before a TCP/DoT connection is closed (RFC 7766 6.2.3), ms. */
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries one connection may have unanswered at once; reading pauses beyond it. */
  maxPipelined: number;
}

export const MAX_MESSAGE_BYTES = 65_535;

/**
 * UDP: dns2's server socket, with its parse-everything handler replaced by ours (the chain
 * parses only what it needs). Packets from source port 0 cannot be answered and are dropped;
 * send errors are caught and counted, never thrown.
 */
export class DnsUdpListener extends UDPServer {
  private readonly handler: DnsHandler;
  private readonly log: Logger;
  private readonly replyTo: DnsReply;

  constructor(type: 'udp4' | 'udp6', handler: DnsHandler, log: Logger) {
    super({ type });
    this.handler = handler;
    this.log = log;
    this.replyTo = (message, client) => {
      if (message === null) return;
      try {
        this.send(message, client.port, client.address, (err) => {
          if (err !== null) this.log.debug({ err: err.message }, 'udp send failed');
        });
      } catch (e: unknown) {
        // send throws at once on a closed socket (an upstream answer arriving after close)
        this.log.debug({ err: e instanceof Error ? e.message : String(e) }, 'udp send failed');
      }
    };
    this.on('error', (err: Error) => {
      this.log.error({ err: err.message }, 'udp listener error');
    });
  }

  override handle(data: Buffer, rinfo: RemoteInfo): void {
    if (rinfo.port === 0) return;
    try {
      this.handler(data, { address: rinfo.address, port: rinfo.port, transport: 'udp' }, this.replyTo);
    } catch (e: unknown) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'dns handler threw (a bug)');
    }
  }
}

/**
 * DNS over a byte stream (TCP and DoT, RFC 7766): 2-byte length framing, pipelined queries
 * answered as they complete, an idle timeout, a cap on unanswered queries per connection.
 */
function serveStream(socket: Socket, transport: DnsTransport, handler: DnsHandler, limits: StreamLimits, log: Logger): void {
  let buffered: Buffer = Buffer.alloc(0);
  let pending = 0;
  let isPeerDone = false;
  const client: DnsClient = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, transport, channel: socket };
  socket.setNoDelay(true);
  socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
  socket.on('error', (err) => {
    log.debug({ err: err.message, transport }, 'stream error');
    socket.destroy();
  });
  const reply: DnsReply = (message) => {
    pending--;
    if (socket.destroyed) return;
    if (message === null) {
      if (isPeerDone && pending === 0) socket.end();
      return;
    }
    const frame = Buffer.allocUnsafe(2 + message.length);
    frame.writeUInt16BE(message.length, 0);
    message.copy(frame, 2);
    socket.write(frame);
    if (socket.isPaused() && pending < limits.maxPipelined) socket.resume();
    if (isPeerDone && pending === 0) socket.end();
  };
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2) {
      const length = buffered.readUInt16BE(0);
      if (length < 12) {
        socket.destroy(); // not DNS: no header fits
        return;
      }
      if (buffered.length < 2 + length) break;
      const message = buffered.subarray(2, 2 + length);
      buffered = buffered.subarray(2 + length);
      // Every message is settled by one reply call: an answer, or null for one the chain
      // drops (a response, a rate-limited query), so pending always returns to zero.
      pending++;
      try {
        handler(Buffer.from(message), client, reply);
      } catch (e: unknown) {
        pending--;
        log.error({ err: e instanceof Error ? e.message : String(e) }, 'dns handler threw (a bug)');
      }
    }
    if (buffered.length > MAX_MESSAGE_BYTES + 2) socket.destroy();
    else if (pending >= limits.maxPipelined) socket.pause();
  });
  socket.on('end', () => {
    isPeerDone = true;
    if (pending === 0) socket.end();
  });
}

export function createTcpListener(handler: DnsHandler, limits: StreamLimits, log: Logger): NetServer {
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    serveStream(socket, 'tcp', handler, limits, log);
  });
  server.maxConnections = limits.maxConnections;
  return server;
}

export function createDotListener(handler: DnsHandler, limits: StreamLimits, tls: { cert: Buffer; key: Buffer }, log: Logger): TlsServer {
  const server = createTlsServer({ cert: tls.cert, key: tls.key, allowHalfOpen: true, handshakeTimeout: limits.idleTimeoutMs, ALPNProtocols: ['dot'] }, (socket) => {
    serveStream(socket, 'dot', handler, limits, log);
  });
  server.maxConnections = limits.maxConnections;
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'dot handshake failed'));
  return server;
}

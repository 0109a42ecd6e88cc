import { randomInt } from 'node:crypto';
import { TlsDialer, settle, type ChannelOutcome, type ChannelQuery, type ChannelSettings, type ChannelTarget, type DialedSocket, type UpstreamChannel } from './upstream-channel.js';

const HEADER_BYTES = 12;

interface DotQuery extends ChannelQuery {
  connection: DotConnection | null;
  id: number;
}

/** One TLS connection and the queries in flight on it, by ID (RFC 7766 pipelining, RFC 7858). */
interface DotConnection extends DialedSocket {
  readonly pending: Map<number, DotQuery>;
  /** Replies received: a connection that answered before is one the server may close while idle. */
  answered: number;
  handshakeTimer: NodeJS.Timeout | null;
  isCorked: boolean;
}

/**
 * DNS over TLS to one upstream: one long-lived connection, queries pipelined on it and matched
 * to replies by ID (answers may come in any order), closed after idleTimeoutMs with nothing in
 * flight and opened again on the next query.
 */
export class DotChannel implements UpstreamChannel {
  private connection: DotConnection | null = null;
  private readonly dialer: TlsDialer;
  private isClosed = false;

  constructor(target: ChannelTarget, private readonly settings: ChannelSettings) {
    this.dialer = new TlsDialer(target, settings, 'dot');
  }

  send(query: Buffer, done: (outcome: ChannelOutcome) => void): () => void {
    const entry: DotQuery = { query, done, hasRetried: false, isSettled: false, connection: null, id: -1 };
    this.dispatch(entry);
    return () => {
      entry.isSettled = true;
      this.forget(entry);
    };
  }

  close(): void {
    this.isClosed = true;
    this.connection?.socket.destroy();
    this.connection = null;
  }

  private dispatch(entry: DotQuery): void {
    if (this.isClosed) return settle(entry, { kind: 'network', cause: 'the upstream pool was closed' });
    const connection = this.connection ?? this.open();
    // The pool's random ID unless this connection has it in flight already; then another.
    let id = entry.query.readUInt16BE(0);
    while (connection.pending.has(id)) id = randomInt(65_536);
    entry.query.writeUInt16BE(id, 0);
    entry.id = id;
    entry.connection = connection;
    connection.pending.set(id, entry);
    connection.socket.setTimeout(0);
    const frame = Buffer.allocUnsafe(2 + entry.query.length);
    frame.writeUInt16BE(entry.query.length, 0);
    entry.query.copy(frame, 2);
    // Queries sent in one tick leave together: one TLS record and one write, not one per query.
    if (!connection.isCorked) {
      connection.isCorked = true;
      connection.socket.cork();
      process.nextTick(() => {
        connection.isCorked = false;
        connection.socket.uncork();
      });
    }
    connection.socket.write(frame);
  }

  private forget(entry: DotQuery): void {
    const connection = entry.connection;
    if (connection === null || connection.pending.get(entry.id) !== entry) return;
    connection.pending.delete(entry.id);
    if (connection.pending.size === 0) this.armIdle(connection);
  }

  private open(): DotConnection {
    const connection: DotConnection = Object.assign(this.dialer.dial(), { pending: new Map<number, DotQuery>(), answered: 0, handshakeTimer: null, isCorked: false });
    const { socket } = connection;
    this.connection = connection;
    socket.unref(); // the pool never holds the process open
    connection.handshakeTimer = setTimeout(() => {
      connection.failure ??= { kind: 'timeout', cause: `no TLS session within ${this.settings.handshakeTimeoutMs} ms` };
      socket.destroy();
    }, this.settings.handshakeTimeoutMs);
    connection.handshakeTimer.unref();
    socket.once('secureConnect', () => {
      if (connection.handshakeTimer !== null) clearTimeout(connection.handshakeTimer);
      connection.handshakeTimer = null;
    });
    // Idle (armed by armIdle), or the server is done: new queries go to a new connection.
    socket.on('timeout', () => {
      this.detach(connection);
      socket.end();
    });
    socket.on('end', () => this.detach(connection));
    socket.on('close', () => this.onClose(connection));
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (length < HEADER_BYTES) {
          connection.failure ??= { kind: 'malformed', cause: `a ${length}-byte message` };
          socket.destroy();
          return;
        }
        if (buffered.length < 2 + length) break;
        const message = Buffer.from(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        this.onMessage(connection, message);
      }
    });
    return connection;
  }

  private onMessage(connection: DotConnection, message: Buffer): void {
    connection.answered++;
    const entry = connection.pending.get(message.readUInt16BE(0));
    if (entry === undefined) return; // the late reply to a query given up on
    this.forget(entry);
    settle(entry, { message });
  }

  private detach(connection: DotConnection): void {
    if (this.connection === connection) this.connection = null;
  }

  private armIdle(connection: DotConnection): void {
    if (connection === this.connection) connection.socket.setTimeout(this.settings.idleTimeoutMs);
  }

  private onClose(connection: DotConnection): void {
    if (connection.handshakeTimer !== null) clearTimeout(connection.handshakeTimer);
    this.detach(connection);
    const failure = connection.failure ?? { kind: 'network' as const, cause: 'the upstream closed the connection' };
    const wasReused = connection.answered > 0 && failure.kind === 'network';
    for (const entry of connection.pending.values()) {
      entry.connection = null;
      if (wasReused && !entry.hasRetried) {
        entry.hasRetried = true;
        this.dispatch(entry);
      } else {
        settle(entry, failure);
      }
    }
    connection.pending.clear();
  }
}

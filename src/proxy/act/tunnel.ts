import type { Socket } from 'node:net';
import type { Connection } from '../connection.js';
import type { DownstreamForwarder } from './forward.js';

/**
 * Splices a client with its upstream, both ways, for the connection's owner.
 *
 * - Bytes the client already sent (still in the connection's reader) go upstream first.
 * - Backpressure both ways: a side whose peer cannot take more is paused until the peer drains
 *   (server-to-client through the DownstreamForwarder when the upstream was dialled with one).
 * - Half-close: a FIN ends only its direction and is passed on; the connection is over when
 *   both sockets have closed, which they do by themselves once both directions have ended.
 * - Aborts pass through: a side that closes with an error before its FIN (a reset, a crash)
 *   resets the other, so a cut-short response never looks complete to the client.
 * - A side that can no longer take bytes never stops the other from being read: what the client
 *   sends after the server has gone is read and dropped, so its FIN or reset is seen and the
 *   connection ends. (pipe() pauses the source when the destination closes; the client's FIN then
 *   goes unread and the connection and its slot stay open until the idle timeout.)
 */
export function startTunnel(connection: Connection, upstream: Socket, forwarder: DownstreamForwarder | null): void {
  const { client } = connection;
  const wasClientEnded = connection.reader.isEnded;
  const replay = connection.reader.detach();
  if (replay.length > 0) upstream.write(replay);

  const canTake = (socket: Socket): boolean => !socket.destroyed && !socket.writableEnded;
  const endClientSide = (): void => {
    if (canTake(upstream)) upstream.end();
    connection.halfClosed();
  };
  const endUpstreamSide = (): void => {
    if (canTake(client)) client.end();
    connection.halfClosed();
  };

  client.on('data', (chunk: Buffer) => {
    if (canTake(upstream) && !upstream.write(chunk)) client.pause();
  });
  upstream.on('drain', () => client.resume());
  client.on('end', endClientSide);
  if (forwarder === null) {
    upstream.on('data', (chunk: Buffer) => {
      if (canTake(client) && !client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
  }
  upstream.on('end', endUpstreamSide);

  upstream.on('close', (hadError: boolean) => {
    if (hadError && !upstream.readableEnded) {
      connection.close('reset');
      return;
    }
    // Nothing more reaches the server; the client still gets what was queued, then FIN.
    endUpstreamSide();
    client.resume();
  });
  client.on('close', (hadError: boolean) => {
    if ((hadError || !client.readableEnded) && !upstream.destroyed) connection.close('reset');
    else upstream.resume();
  });

  if (wasClientEnded) endClientSide();
  if (upstream.readableEnded) endUpstreamSide();
  client.resume();
  upstream.resume();
}

import type { Socket } from 'node:net';

/** What a client's first bytes on an intercepted connection look like. */
export type FirstBytesKind = 'tls' | 'http' | 'other' | 'need-more';

const CODE_A = 0x41;
const CODE_Z = 0x5a;
const CODE_DASH = 0x2d;
const CODE_SPACE = 0x20;
const TLS_HANDSHAKE = 0x16;
/** Longer than any registered HTTP method (UPDATEREDIRECTREF has 17 letters). */
const MAX_METHOD_LENGTH = 20;

/**
 * Tells TLS (a handshake record) from HTTP/1.x (an upper-case method token and a space) from
 * anything else, on as few bytes as the client has sent; 'need-more' while a method token may
 * still be arriving one byte at a time.
 */
export function classifyFirstBytes(bytes: Uint8Array): FirstBytesKind {
  if (bytes.length === 0) return 'need-more';
  if (bytes[0] === TLS_HANDSHAKE) return 'tls';
  const limit = Math.min(bytes.length, MAX_METHOD_LENGTH + 1);
  for (let i = 0; i < limit; i++) {
    const c = bytes[i]!;
    if (c === CODE_SPACE) return i > 0 ? 'http' : 'other';
    if ((c < CODE_A || c > CODE_Z) && c !== CODE_DASH) return 'other';
  }
  return bytes.length > MAX_METHOD_LENGTH ? 'other' : 'need-more';
}

/**
 * Reads until the first bytes can be classified. Two deadlines: `firstDataMs` while nothing has
 * come ('timeout': the server may be the one to speak first), then `classifyMs` for the rest of
 * a method token ('incomplete': a client dripping "G", "E", "T" to slip its Host past the
 * sniffer is refused, not waved through). The bytes are put back into the socket (unshift), so
 * the handler that takes over reads the stream from its first byte.
 */
export function sniffFirstBytes(socket: Socket, deadlines: { firstDataMs: number; classifyMs: number }): Promise<{ kind: FirstBytesKind | 'timeout' | 'incomplete' | 'closed'; bytes: Buffer }> {
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (kind: FirstBytesKind | 'timeout' | 'incomplete' | 'closed'): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      if (buffered.length > 0 && kind !== 'closed') socket.unshift(buffered);
      resolve({ kind, bytes: buffered });
    };
    const onData = (chunk: Buffer): void => {
      const isFirst = buffered.length === 0;
      buffered = isFirst ? chunk : Buffer.concat([buffered, chunk]);
      const kind = classifyFirstBytes(buffered);
      if (kind !== 'need-more') finish(kind);
      else if (isFirst) {
        clearTimeout(timer);
        timer = setTimeout(() => finish('incomplete'), deadlines.classifyMs);
      }
    };
    const onEnd = (): void => finish('closed');
    let timer = setTimeout(() => finish('timeout'), deadlines.firstDataMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}

import { recognizeLoco } from './loco.js';
import type { SocketReader } from './socket-reader.js';

/** What a client's first bytes on an intercepted connection look like. */
export type FirstBytesKind = 'tls' | 'http' | 'loco' | 'other' | 'need-more';

const CODE_A = 0x41;
const CODE_Z = 0x5a;
const CODE_DASH = 0x2d;
const CODE_SPACE = 0x20;
const TLS_HANDSHAKE = 0x16;
/** Longer than any registered HTTP method (UPDATEREDIRECTREF has 17 letters). */
const MAX_METHOD_LENGTH = 20;

/**
 * Tells TLS (a handshake record) from KakaoTalk's LOCO (inspect/loco.ts) from HTTP/1.x (an
 * upper-case method token and a space) from anything else, on as few bytes as the client has
 * sent; 'need-more' while a method token may still be arriving one byte at a time, or a LOCO
 * header has come without the rest of its handshake.
 */
export function classifyFirstBytes(bytes: Uint8Array): FirstBytesKind {
  if (bytes.length === 0) return 'need-more';
  if (bytes[0] === TLS_HANDSHAKE) return 'tls';
  const loco = recognizeLoco(bytes);
  if (loco !== 'not-loco') return loco;
  const limit = Math.min(bytes.length, MAX_METHOD_LENGTH + 1);
  for (let i = 0; i < limit; i++) {
    const c = bytes[i]!;
    if (c === CODE_SPACE) return i > 0 ? 'http' : 'other';
    if ((c < CODE_A || c > CODE_Z) && c !== CODE_DASH) return 'other';
  }
  return bytes.length > MAX_METHOD_LENGTH ? 'other' : 'need-more';
}

/**
 * Waits until the client's first bytes can be classified, without taking them. Two deadlines:
 * `firstData` while nothing has come ('timeout': the server may be the one to speak first),
 * then `classify` for the rest of a method token ('incomplete': a client dripping "G", "E", "T"
 * to slip its Host past the sniffer is refused, not waved through). `classify` is asked for
 * only once the first byte is in, so its deadline starts there.
 */
export async function sniffFirstBytes(reader: SocketReader, deadlines: { firstData: AbortSignal; classify: () => AbortSignal }): Promise<FirstBytesKind | 'timeout' | 'incomplete' | 'closed'> {
  let signal = deadlines.firstData;
  for (;;) {
    const kind = classifyFirstBytes(reader.buffered);
    if (kind !== 'need-more') return kind;
    const hadBytes = reader.buffered.length > 0;
    const waited = await reader.wait(signal);
    if (waited === 'end' || waited === 'closed') return 'closed';
    if (waited === 'timeout') return hadBytes ? 'incomplete' : 'timeout';
    if (!hadBytes) signal = deadlines.classify();
  }
}

import { readClientHello, type ClientHelloInfo } from './client-hello.js';
import type { SocketReader } from './socket-reader.js';

export type HelloFailure = 'invalid' | 'no-sni' | 'timeout' | 'too-large' | 'closed';

export type HelloRead = { info: ClientHelloInfo } | { failure: HelloFailure; reason: string };

/**
 * Reads a ClientHello off a connection (all segments, all records, within the cap, until
 * `signal` aborts: the connection's hello deadline). It only peeks: every byte stays in the
 * reader's buffer, to be replayed upstream unchanged when the connection is allowed.
 */
export async function readHello(reader: SocketReader, options: { maxBytes: number; signal: AbortSignal }): Promise<HelloRead> {
  for (;;) {
    const result = readClientHello(reader.buffered, options.maxBytes);
    if (result.kind === 'found') return { info: { sni: result.sni, alpn: result.alpn, hasEch: result.hasEch } };
    if (result.kind === 'no-name') return { failure: 'no-sni', reason: 'no-sni' };
    if (result.kind === 'invalid') return { failure: result.reason === 'too-large' ? 'too-large' : 'invalid', reason: result.reason };
    if (reader.buffered.length >= options.maxBytes) return { failure: 'too-large', reason: 'too-large' };
    const waited = await reader.wait(options.signal);
    if (waited === 'end' || waited === 'closed') return { failure: 'closed', reason: waited };
    if (waited === 'timeout') return { failure: 'timeout', reason: 'timeout' };
  }
}

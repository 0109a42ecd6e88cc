import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DownstreamForwarder } from '../../../../src/proxy/act/forward.js';

/** A client socket stand-in whose writes complete only after `delayMs` (a full kernel buffer). */
function slowTarget(delayMs: number): { target: Socket; written: Buffer[] } {
  const written: Buffer[] = [];
  const target = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      written.push(Buffer.from(chunk));
      setTimeout(callback, delayMs);
    },
  });
  return { target: target as unknown as Socket, written };
}

function sourceSpy(): { source: Socket; resumed: () => number } {
  let resumes = 0;
  const source = {
    resume() {
      resumes++;
      return this;
    },
  } as unknown as Socket;
  return { source, resumed: () => resumes };
}

function read(forwarder: DownstreamForwarder, bytes: Uint8Array): boolean {
  const buffer = (forwarder.onread.buffer as () => Uint8Array)();
  buffer.set(bytes);
  return forwarder.onread.callback(bytes.length, buffer);
}

describe('DownstreamForwarder', () => {
  it('a small read the client cannot take at once pauses the upstream and resumes it once written (no drain event needed)', async () => {
    const { target, written } = slowTarget(20);
    const { source, resumed } = sourceSpy();
    const forwarder = new DownstreamForwarder(target);
    forwarder.bind(source);
    // 1,000 bytes: under the socket's highWaterMark, so Node never emits 'drain' for it.
    expect(read(forwarder, Buffer.alloc(1000, 7))).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(resumed()).toBe(1);
    expect(Buffer.concat(written)).toEqual(Buffer.alloc(1000, 7));
  });

  it('a large pending read resumes too, and the bytes written are the bytes read even though the buffer is reused', async () => {
    const { target, written } = slowTarget(5);
    const { source, resumed } = sourceSpy();
    const forwarder = new DownstreamForwarder(target);
    forwarder.bind(source);
    const chunks = [Buffer.alloc(4096, 1), Buffer.alloc(8192, 2), Buffer.alloc(16384, 3)];
    for (const chunk of chunks) {
      expect(read(forwarder, chunk)).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(resumed()).toBe(3);
    expect(Buffer.concat(written)).toEqual(Buffer.concat(chunks));
  });

  it('keeps reading while the client takes everything at once', () => {
    const written: Buffer[] = [];
    const fast = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        written.push(Buffer.from(chunk));
        callback();
      },
    }) as unknown as Socket;
    const forwarder = new DownstreamForwarder(fast);
    expect(read(forwarder, Buffer.from('hello'))).toBe(true);
    expect(Buffer.concat(written).toString()).toBe('hello');
  });
});

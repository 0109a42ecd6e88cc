import type { Socket } from 'node:net';

/**
 * Pull-style reading from a socket for protocols read message by message (HTTP/1.1 heads and
 * bodies): bytes are buffered as they arrive, and `wait` resolves once more came, the peer
 * ended, or the deadline passed. Reading pauses while nobody waits, so a client cannot push
 * more than the current message's cap into memory.
 */
export class SocketReader {
  buffered: Buffer = Buffer.alloc(0);
  isEnded = false;
  private waiter: ((outcome: 'data' | 'end' | 'timeout') => void) | null = null;
  private readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.pause();
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      socket.pause();
      this.wake('data');
    });
    const onEnd = (): void => {
      this.isEnded = true;
      this.wake('end');
    };
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  }

  /** Waits for more bytes; 'end' when the peer is gone, 'timeout' after `timeoutMs`. */
  wait(timeoutMs: number): Promise<'data' | 'end' | 'timeout'> {
    if (this.isEnded) return Promise.resolve('end');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        this.socket.pause();
        resolve('timeout');
      }, timeoutMs);
      this.waiter = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
      this.socket.resume();
    });
  }

  /** Removes and returns the first `n` buffered bytes. */
  take(n: number): Buffer {
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  private wake(outcome: 'data' | 'end'): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.(outcome);
  }
}

import type { Socket } from 'node:net';

/** Why a wait ended: bytes came, the peer ended (FIN or gone), or the signal was aborted. */
export type WaitOutcome = 'data' | 'end' | 'timeout' | 'closed';

/** The reason a Connection aborts a phase signal with when its deadline passes. */
export const DEADLINE_REASON = 'timeout';

/**
 * Pull-style reading of what a client sends while it is inspected (a ClientHello, HTTP heads and
 * bodies): bytes are buffered as they arrive, and `wait` resolves once more came, the peer
 * ended, or the signal (a deadline, the connection closing) was aborted. Reading pauses while
 * nobody waits, so a client cannot push more than the current message's cap into memory.
 * Inspection only peeks and takes; `detach` hands what is left to whoever splices the socket.
 */
export class SocketReader {
  buffered: Buffer = Buffer.alloc(0);
  /** The peer sent FIN, or the socket closed: no more bytes will come. */
  isEnded = false;
  private waiter: ((outcome: WaitOutcome) => void) | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    this.socket.pause();
    this.wake('data');
  };
  private readonly onEnd = (): void => {
    this.isEnded = true;
    this.wake('end');
  };

  constructor(private readonly socket: Socket) {
    socket.pause();
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
  }

  /** Waits for more bytes; 'end' when the peer is done, 'timeout' or 'closed' when `signal` aborts first. */
  wait(signal: AbortSignal): Promise<WaitOutcome> {
    if (this.isEnded) return Promise.resolve('end');
    if (signal.aborted) return Promise.resolve(signal.reason === DEADLINE_REASON ? 'timeout' : 'closed');
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.waiter = null;
        this.socket.pause();
        resolve(signal.reason === DEADLINE_REASON ? 'timeout' : 'closed');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = (outcome) => {
        signal.removeEventListener('abort', onAbort);
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

  /** Stops reading for good: the socket stays paused with no listener of ours; returns what was buffered. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.pause();
    this.wake('closed');
    return this.take(this.buffered.length);
  }

  private wake(outcome: WaitOutcome): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.(outcome);
  }
}

import { createRequire } from 'node:module';
import type { Server, Socket } from 'node:net';

/** A destination as the client meant it, before nftables redirected the packet. */
export interface Endpoint {
  address: string;
  port: number;
}

/** A UDP socket of native/transparent.c: IP_TRANSPARENT, and each datagram's original destination. */
export interface TransparentUdpSocket {
  connect(address: string, port: number): void;
  /** False when the kernel did not take the datagram (UDP's loss). */
  send(data: Buffer, address: string, port: number): boolean;
  address(): Endpoint;
  close(): void;
}

/**
 * The DNS resolver's UDP socket of native/udp-batch.c: datagrams arrive in batches in fixed
 * slots of `buffer` (IN_SLOT bytes each, the largest UDP payload), with their senders in the parallel arrays.
 */
export interface UdpBatchSocket {
  readonly buffer: Buffer;
  /** Per slot: the datagram's length, or -1 for one to drop (truncated, unknown family). */
  readonly lengths: Int32Array;
  readonly ports: Int32Array;
  /** Per slot: 16 bytes, the sender's IPv4 (first 4) or IPv6 address. */
  readonly addresses: Buffer;
  /** Per slot: 4 or 6. */
  readonly families: Buffer;
  /** `reusePort`: SO_REUSEPORT, so the sockets of several threads share the port. */
  bind(address: string, port: number, reusePort: boolean): void;
  /** Answers the sender of a slot of the current batch; sent when the batch callback returns. */
  reply(slot: number, data: Buffer): void;
  /** Sends at once (answers that come after the batch). False when the kernel did not take it. */
  send(data: Buffer, address: string, port: number): boolean;
  address(): Endpoint;
  close(): void;
}

/** Bytes per slot of UdpBatchSocket.buffer (IN_SLOT in native/udp-batch.c). */
export const UDP_BATCH_SLOT_BYTES = 65_536;

interface NativeBinding {
  originalDestination(fd: number, family: 4 | 6): Endpoint | null;
  setTransparent(fd: number, family: 4 | 6): void;
  UdpSocket: new (address: string, port: number, onMessage: (data: Buffer, source: Endpoint, destination: Endpoint | null) => void) => TransparentUdpSocket;
  UdpBatchSocket: new (onBatch: (count: number) => void) => UdpBatchSocket;
}

let binding: NativeBinding | null | undefined;
let loadError = '';

/**
 * The addon built from native/ at install (node-gyp), or null with the reason in
 * nativeLoadError(): it exists on Linux only. Without it the gateway runs, but refuses
 * transparent listeners, and DNS over UDP goes through dgram one datagram at a time.
 */
export function nativeBinding(): NativeBinding | null {
  if (binding !== undefined) return binding;
  // PORTCULLIS_NO_NATIVE=1 runs without it, as on a system where it cannot be built.
  if (process.env.PORTCULLIS_NO_NATIVE === '1') {
    loadError = 'turned off by PORTCULLIS_NO_NATIVE=1';
    binding = null;
    return binding;
  }
  try {
    const require = createRequire(import.meta.url);
    binding = require('../../build/Release/portcullis_native.node') as NativeBinding;
    if (typeof binding.originalDestination !== 'function') throw new Error('built without sources (not Linux)');
  } catch (e: unknown) {
    loadError = e instanceof Error ? e.message.split('\n')[0]! : String(e);
    binding = null;
  }
  return binding;
}

export function nativeLoadError(): string {
  return loadError;
}

/**
 * The file descriptor behind a connected net.Socket or a listening net.Server (libuv's TCP
 * handle exposes it on Unix).
 */
export function socketFd(socket: Socket | Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor');
  return fd;
}

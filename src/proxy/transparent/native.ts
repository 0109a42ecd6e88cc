import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

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

interface NativeBinding {
  originalDestination(fd: number, family: 4 | 6): Endpoint | null;
  setTransparent(fd: number, family: 4 | 6): void;
  UdpSocket: new (address: string, port: number, onMessage: (data: Buffer, source: Endpoint, destination: Endpoint | null) => void) => TransparentUdpSocket;
}

let binding: NativeBinding | null | undefined;
let loadError = '';

/**
 * The addon built from native/transparent.c at install (node-gyp), or null with the reason in
 * nativeLoadError(): it exists on Linux only, and the gateway runs without it unless a
 * transparent listener is configured.
 */
export function transparentBinding(): NativeBinding | null {
  if (binding !== undefined) return binding;
  try {
    const require = createRequire(import.meta.url);
    binding = require('../../../build/Release/portcullis_transparent.node') as NativeBinding;
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

/** The file descriptor behind a connected net.Socket (libuv's TCP handle exposes it on Unix). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor');
  return fd;
}

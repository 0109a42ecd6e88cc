import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

/**
 * QUIC Initial packets, client side, read far enough to find the TLS ClientHello: long header,
 * Initial keys derived from the Destination Connection ID (RFC 9001 5.2, RFC 9369 3.3), header
 * protection removed (RFC 9001 5.4), payload decrypted with AES-128-GCM, CRYPTO frames taken out
 * (RFC 9000 19.6). Hand-written: Node has no QUIC, and only these few steps are needed to read
 * the SNI of a connection that is about to be allowed or dropped.
 */

export const QUIC_V1 = 0x00000001;
export const QUIC_V2 = 0x6b3343cf;

interface VersionParams {
  salt: Buffer;
  /** The long-header type bits (0x30 of the first byte) that mean Initial. */
  initialType: number;
  labels: { key: string; iv: string; hp: string };
}

const VERSIONS = new Map<number, VersionParams>([
  [QUIC_V1, { salt: Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'), initialType: 0, labels: { key: 'quic key', iv: 'quic iv', hp: 'quic hp' } }],
  [QUIC_V2, { salt: Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex'), initialType: 1, labels: { key: 'quicv2 key', iv: 'quicv2 iv', hp: 'quicv2 hp' } }],
]);

export interface InitialKeys {
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

function hkdfExtract(salt: Buffer, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt).update(ikm).digest();
}

/** HKDF-Expand-Label (RFC 8446 7.1) with an empty context. */
function hkdfExpandLabel(secret: Buffer, label: string, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, fullLabel.length]), fullLabel, Buffer.from([0])]);
  const out: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(out).length < length; i++) {
    previous = createHmac('sha256', secret)
      .update(Buffer.concat([previous, info, Buffer.from([i])]))
      .digest();
    out.push(previous);
  }
  return Buffer.concat(out).subarray(0, length);
}

/** The client's Initial keys for a version and Destination Connection ID; null for an unknown version. */
export function clientInitialKeys(version: number, dcid: Uint8Array): InitialKeys | null {
  const params = VERSIONS.get(version);
  if (params === undefined) return null;
  const clientSecret = hkdfExpandLabel(hkdfExtract(params.salt, dcid), 'client in', 32);
  return { key: hkdfExpandLabel(clientSecret, params.labels.key, 16), iv: hkdfExpandLabel(clientSecret, params.labels.iv, 12), hp: hkdfExpandLabel(clientSecret, params.labels.hp, 16) };
}

export interface CryptoFrame {
  offset: number;
  data: Buffer;
}

export type InitialResult =
  | { kind: 'initial'; version: number; dcid: Buffer; scid: Buffer; packetNumber: number; crypto: CryptoFrame[]; packetLength: number }
  | { kind: 'not-initial'; reason: string };

const notInitial = (reason: string): InitialResult => ({ kind: 'not-initial', reason });

/**
 * A QUIC variable-length integer (RFC 9000 16) at `pos`: value and size, or null past the end.
 * Values past 2^53 lose precision; the lengths and offsets of an Initial never come near.
 */
export function readVarint(buf: Uint8Array, pos: number): { value: number; size: number } | null {
  if (pos >= buf.length) return null;
  const size = 1 << (buf[pos]! >> 6);
  if (pos + size > buf.length) return null;
  let value = buf[pos]! & 0x3f;
  for (let i = 1; i < size; i++) value = value * 256 + buf[pos + i]!;
  return { value, size };
}

/**
 * Reads the first (coalesced packets: only the first) QUIC packet of a UDP datagram if it is a
 * client Initial of QUIC v1 or v2 and decrypts it. Anything else — short header, another long
 * type or version, a packet that does not authenticate — is `not-initial`, never an exception.
 */
export function readInitialPacket(datagram: Uint8Array): InitialResult {
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (buf.length < 7 || (buf[0]! & 0x80) === 0) return notInitial('short-header');
  if ((buf[0]! & 0x40) === 0) return notInitial('fixed-bit');
  const version = buf.readUInt32BE(1);
  const params = VERSIONS.get(version);
  if (params === undefined) return notInitial('version');
  if (((buf[0]! >> 4) & 0x03) !== params.initialType) return notInitial('packet-type');
  let pos = 5;
  const dcidLength = buf[pos]!;
  if (dcidLength > 20 || pos + 1 + dcidLength >= buf.length) return notInitial('dcid');
  const dcid = buf.subarray(pos + 1, pos + 1 + dcidLength);
  pos += 1 + dcidLength;
  const scidLength = buf[pos]!;
  if (scidLength > 20 || pos + 1 + scidLength >= buf.length) return notInitial('scid');
  const scid = buf.subarray(pos + 1, pos + 1 + scidLength);
  pos += 1 + scidLength;
  const token = readVarint(buf, pos);
  if (token === null || pos + token.size + token.value > buf.length) return notInitial('token');
  pos += token.size + token.value;
  const length = readVarint(buf, pos);
  if (length === null) return notInitial('length');
  pos += length.size;
  const pnOffset = pos;
  const packetEnd = pnOffset + length.value;
  // The sample starts 4 bytes past the packet number's start (RFC 9001 5.4.2).
  if (packetEnd > buf.length || length.value < 4 + 16) return notInitial('length');

  const keys = clientInitialKeys(version, dcid)!;
  const sample = buf.subarray(pnOffset + 4, pnOffset + 20);
  const mask = createCipheriv('aes-128-ecb', keys.hp, null).update(sample);
  const first = buf[0]! ^ (mask[0]! & 0x0f);
  const pnLength = (first & 0x03) + 1;
  const header = Buffer.from(buf.subarray(0, pnOffset + pnLength));
  header[0] = first;
  let packetNumber = 0;
  for (let i = 0; i < pnLength; i++) {
    header[pnOffset + i] = buf[pnOffset + i]! ^ mask[1 + i]!;
    packetNumber = packetNumber * 256 + header[pnOffset + i]!;
  }

  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 8; i++) nonce[nonce.length - 1 - i]! ^= Math.floor(packetNumber / 2 ** (8 * i)) & 0xff;
  const ciphertext = buf.subarray(pnOffset + pnLength, packetEnd - 16);
  const tag = buf.subarray(packetEnd - 16, packetEnd);
  let payload: Buffer;
  try {
    const decipher = createDecipheriv('aes-128-gcm', keys.key, nonce);
    decipher.setAAD(header);
    decipher.setAuthTag(tag);
    payload = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    return notInitial('decrypt');
  }
  const crypto = cryptoFrames(payload);
  if (crypto === null) return notInitial('frames');
  return { kind: 'initial', version, dcid: Buffer.from(dcid), scid: Buffer.from(scid), packetNumber, crypto, packetLength: packetEnd };
}

/** The CRYPTO frames of an Initial payload; null when a frame is malformed or not allowed in an Initial. */
function cryptoFrames(payload: Buffer): CryptoFrame[] | null {
  const out: CryptoFrame[] = [];
  let pos = 0;
  while (pos < payload.length) {
    const type = payload[pos]!;
    if (type === 0x00 || type === 0x01) {
      pos++; // PADDING, PING
    } else if (type === 0x02 || type === 0x03) {
      // ACK: largest, delay, range count, first range, then ranges (and ECN counts for 0x03).
      pos++;
      const fields: number[] = [];
      for (let i = 0; i < 4; i++) {
        const v = readVarint(payload, pos);
        if (v === null) return null;
        fields.push(v.value);
        pos += v.size;
      }
      const extra = fields[2]! * 2 + (type === 0x03 ? 3 : 0);
      for (let i = 0; i < extra; i++) {
        const v = readVarint(payload, pos);
        if (v === null) return null;
        pos += v.size;
      }
    } else if (type === 0x06) {
      const offset = readVarint(payload, pos + 1);
      if (offset === null) return null;
      const length = readVarint(payload, pos + 1 + offset.size);
      if (length === null) return null;
      const start = pos + 1 + offset.size + length.size;
      if (start + length.value > payload.length) return null;
      out.push({ offset: offset.value, data: Buffer.from(payload.subarray(start, start + length.value)) });
      pos = start + length.value;
    } else if (type === 0x1c) {
      return out; // CONNECTION_CLOSE: nothing after it matters
    } else {
      return null;
    }
  }
  return out;
}

/**
 * The CRYPTO stream of one connection's Initial packets, reassembled from frames that arrive
 * split and out of order (Chrome spreads its ClientHello over two Initials), within a cap.
 */
export class CryptoStream {
  private readonly chunks = new Map<number, Buffer>();

  constructor(private readonly maxBytes: number) {}

  /** Adds frames; false when they reach past the cap. */
  add(frames: readonly CryptoFrame[]): boolean {
    for (const frame of frames) {
      if (frame.offset + frame.data.length > this.maxBytes) return false;
      const known = this.chunks.get(frame.offset);
      if (known === undefined || known.length < frame.data.length) this.chunks.set(frame.offset, frame.data);
    }
    return true;
  }

  /** The contiguous bytes from offset 0. */
  contiguous(): Buffer {
    const parts: Buffer[] = [];
    let end = 0;
    for (const [offset, data] of [...this.chunks].sort((a, b) => a[0] - b[0])) {
      if (offset > end) break;
      if (offset + data.length <= end) continue;
      parts.push(data.subarray(end - offset));
      end = offset + data.length;
    }
    return Buffer.concat(parts);
  }
}

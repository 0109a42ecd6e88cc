/**
 * KakaoTalk's LOCO protocol, recognised from a client's first bytes on a TCP connection, so it
 * is blocked on any address and port, not only on the catalog's ranges.
 *
 * The secure layer (every client since 2015; layout from the public re-implementations
 * storycraft/node-kakao src/network/loco-secure-layer.ts, storycraft/loco-protocol-rs
 * src/secure/client.rs, JungHoonGhae/openkakao openkakao-rs/src/loco/crypto.rs, and captures in
 * ntop/nDPI tests and stulle123/kakaotalk_analysis) opens with a handshake, little-endian:
 *
 *   u32 encrypted key length = 256 | u32 key encryption type | u32 cipher type | 256 bytes RSA-OAEP
 *
 * Key types seen: 5 (2015), 12, 14, 15, 16 (2025); cipher types 2 (AES-CFB) and 3 (AES-GCM).
 * Often the first encrypted frame follows in the same segment: u32 length, then a 16-byte IV
 * (CFB) or 12-byte nonce and 16-byte tag (GCM) around the ciphertext.
 *
 * Legacy clients sent LOCO packets in the clear: u32 packet id | u16 status (0 from a client) |
 * 11-byte method name (upper-case ASCII, NUL-padded) | u8 body type (0: BSON) | u32 body length,
 * then the BSON body, whose own first u32 repeats the length.
 *
 * Hand-written on purpose: it runs on the first bytes of every intercepted connection that is
 * neither TLS nor HTTP, so it reads fixed offsets and allocates nothing.
 */
export type LocoVerdict = 'loco' | 'not-loco' | 'need-more';

const HANDSHAKE_HEADER_BYTES = 12;
const RSA_CIPHERTEXT_BYTES = 256;
export const LOCO_HANDSHAKE_BYTES = HANDSHAKE_HEADER_BYTES + RSA_CIPHERTEXT_BYTES;
/** Key encryption types are small numbers (1..16 so far); room for new ones, not for any u32. */
const MAX_KEY_TYPE = 0xff;
const CIPHER_CFB = 2;
const CIPHER_GCM = 3;
/**
 * RSA ciphertext is indistinguishable from random: 256 random bytes hold about 162 distinct
 * values (standard deviation about 5). Text, padding or zeros hold far fewer.
 */
const MIN_DISTINCT_CIPHERTEXT_BYTES = 128;
/** Smallest frame after the handshake: a CFB IV and one byte; the largest any client sends. */
const MIN_FRAME_SIZE = 17;
const MAX_FRAME_SIZE = 1 << 20;

const PLAIN_HEADER_BYTES = 22;
const PLAIN_METHOD_START = 6;
const PLAIN_METHOD_END = 17;
const MIN_BSON_BYTES = 5;

/** Bytes of header needed before a client is waited for: 00 01 00 00 (256, little-endian). */
const HEADER_PREFIX_BYTES = 4;
const isZero = (b: number): boolean => b === 0;
/**
 * The handshake header byte by byte: the key length 256, a key type of 1-255, cipher type 2
 * (AES-CFB) or 3 (AES-GCM), each a little-endian u32 with zero high bytes.
 */
const HEADER_BYTE_FITS: readonly ((b: number) => boolean)[] = [
  isZero,
  (b) => b === 1,
  isZero,
  isZero,
  (b) => b !== 0 && b <= MAX_KEY_TYPE,
  isZero,
  isZero,
  isZero,
  (b) => b === CIPHER_CFB || b === CIPHER_GCM,
  isZero,
  isZero,
  isZero,
];

const seen = new Uint8Array(256);

export function recognizeLoco(bytes: Uint8Array): LocoVerdict {
  const secure = recognizeHandshake(bytes);
  if (secure !== 'not-loco') return secure;
  return recognizePlainPacket(bytes);
}

function u32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

/**
 * The secure-layer handshake: its header read as far as it has come (from 4 bytes on, so a
 * client splitting its first segment does not slip past), then decided on all 268 bytes.
 */
function recognizeHandshake(bytes: Uint8Array): LocoVerdict {
  if (bytes.length < HEADER_PREFIX_BYTES) return 'not-loco';
  for (let i = 0; i < Math.min(bytes.length, HANDSHAKE_HEADER_BYTES); i++) {
    if (!HEADER_BYTE_FITS[i]!(bytes[i]!)) return 'not-loco';
  }
  if (bytes.length < LOCO_HANDSHAKE_BYTES) return 'need-more';
  if (distinctBytes(bytes, HANDSHAKE_HEADER_BYTES, LOCO_HANDSHAKE_BYTES) < MIN_DISTINCT_CIPHERTEXT_BYTES) return 'not-loco';
  if (bytes.length >= LOCO_HANDSHAKE_BYTES + 4) {
    const frame = u32le(bytes, LOCO_HANDSHAKE_BYTES);
    if (frame < MIN_FRAME_SIZE || frame > MAX_FRAME_SIZE) return 'not-loco';
  }
  return 'loco';
}

function distinctBytes(bytes: Uint8Array, start: number, end: number): number {
  seen.fill(0);
  let count = 0;
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    if (seen[b] === 0) {
      seen[b] = 1;
      count++;
    }
  }
  return count;
}

/** A legacy plaintext packet: decided once its header and the BSON length after it are in. */
function recognizePlainPacket(bytes: Uint8Array): LocoVerdict {
  if (bytes.length < PLAIN_METHOD_START + 1) return 'not-loco';
  if (bytes[4] !== 0 || bytes[5] !== 0) return 'not-loco'; // status: 0 from a client
  let end = PLAIN_METHOD_START;
  const limit = Math.min(bytes.length, PLAIN_METHOD_END);
  while (end < limit && bytes[end]! >= 0x41 && bytes[end]! <= 0x5a) end++;
  if (end === PLAIN_METHOD_START) return 'not-loco';
  for (let i = end; i < limit; i++) if (bytes[i] !== 0) return 'not-loco';
  if (end - PLAIN_METHOD_START < 2 && bytes.length > end) return 'not-loco'; // a one-letter method is no LOCO call
  if (bytes.length < PLAIN_HEADER_BYTES + 4) return 'need-more';
  if (bytes[PLAIN_METHOD_END] !== 0) return 'not-loco'; // body type: BSON
  const bodyLength = u32le(bytes, 18);
  if (bodyLength < MIN_BSON_BYTES || bodyLength > MAX_FRAME_SIZE) return 'not-loco';
  return u32le(bytes, PLAIN_HEADER_BYTES) === bodyLength ? 'loco' : 'not-loco';
}

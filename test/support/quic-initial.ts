import { createCipheriv, randomBytes } from 'node:crypto';
import { clientInitialKeys, QUIC_V1, QUIC_V2 } from '../../src/proxy/inspect/quic-initial.js';
import { alpn, commonExtensions, handshake, helloBody, keyShare, serverName } from './client-hello.js';

/**
 * Client Initial packets as a browser sends them (RFC 9001 5): a ClientHello in CRYPTO frames,
 * AEAD-protected with the Initial keys of a random connection ID, header protection applied,
 * each datagram padded to 1200 bytes. `pieces` splits the hello over several packets, the way
 * Chrome spreads a post-quantum key share over two.
 */
export function clientInitials(hello: Buffer, options: { version?: number; pieces?: number; dcid?: Buffer } = {}): Buffer[] {
  const version = options.version ?? QUIC_V1;
  const dcid = options.dcid ?? randomBytes(8);
  const scid = randomBytes(8);
  const pieces = options.pieces ?? 1;
  const size = Math.ceil(hello.length / pieces);
  const out: Buffer[] = [];
  for (let i = 0; i < pieces; i++) {
    const offset = i * size;
    const data = hello.subarray(offset, offset + size);
    const frame = Buffer.concat([Buffer.from([0x06]), varint(offset), varint(data.length), data]);
    out.push(protect(version, dcid, scid, i, frame));
  }
  return out;
}

/** A Chrome-like ClientHello handshake message for `name` (X25519MLKEM768 share: about 1.8 KB). */
export function browserHello(name: string): Buffer {
  const withoutKeyShare = commonExtensions().slice(0, -1);
  return handshake(helloBody({ extensions: [serverName(name), alpn('h3'), ...withoutKeyShare, keyShare({ group: 0x11ec, length: 1216 }, { group: 0x001d, length: 32 })] }));
}

const DATAGRAM_BYTES = 1200;
const PN_LENGTH = 2;

function varint(value: number): Buffer {
  if (value < 0x40) return Buffer.from([value]);
  if (value < 0x4000) return Buffer.from([0x40 | (value >> 8), value & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value | 0x80000000);
  return b;
}

function protect(version: number, dcid: Buffer, scid: Buffer, packetNumber: number, frames: Buffer): Buffer {
  const keys = clientInitialKeys(version, dcid)!;
  const initialType = version === QUIC_V2 ? 1 : 0;
  const first = 0xc0 | (initialType << 4) | (PN_LENGTH - 1);
  const versionBytes = Buffer.alloc(4);
  versionBytes.writeUInt32BE(version);
  const prefix = Buffer.concat([Buffer.from([first]), versionBytes, Buffer.from([dcid.length]), dcid, Buffer.from([scid.length]), scid, varint(0)]);
  // Pad the payload (PADDING frames are zero bytes) so the datagram is 1200 bytes.
  const lengthFieldBytes = 2;
  const payloadLength = Math.max(frames.length, DATAGRAM_BYTES - prefix.length - lengthFieldBytes - PN_LENGTH - 16);
  const payload = Buffer.concat([frames, Buffer.alloc(payloadLength - frames.length)]);
  const pn = Buffer.from([(packetNumber >> 8) & 0xff, packetNumber & 0xff]);
  const length = Buffer.from([0x40 | ((PN_LENGTH + payload.length + 16) >> 8), (PN_LENGTH + payload.length + 16) & 0xff]);
  const header = Buffer.concat([prefix, length, pn]);
  const nonce = Buffer.from(keys.iv);
  nonce[nonce.length - 1]! ^= packetNumber & 0xff;
  nonce[nonce.length - 2]! ^= (packetNumber >> 8) & 0xff;
  const cipher = createCipheriv('aes-128-gcm', keys.key, nonce);
  cipher.setAAD(header);
  const sealed = Buffer.concat([cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
  const packet = Buffer.concat([header, sealed]);
  const pnOffset = prefix.length + length.length;
  const mask = createCipheriv('aes-128-ecb', keys.hp, null).update(packet.subarray(pnOffset + 4, pnOffset + 20));
  packet[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < PN_LENGTH; i++) packet[pnOffset + i]! ^= mask[1 + i]!;
  return packet;
}

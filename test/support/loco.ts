import { constants, createCipheriv, generateKeyPairSync, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';

/**
 * KakaoTalk LOCO traffic built to the layout the public client re-implementations use
 * (src/proxy/inspect/loco.ts lists them): the secure-layer handshake with a real RSA-OAEP
 * encrypted AES key, encrypted frames (AES-128-CFB or -GCM) around real LOCO packets, and legacy
 * plaintext packets with BSON bodies.
 */

export type LocoCipher = 2 | 3;

let serverKey: KeyObject | null = null;

/** A 2048-bit RSA key with e = 3, as KakaoTalk's LOCO server key; made once per process. */
function locoServerKey(): KeyObject {
  serverKey ??= generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey;
  return serverKey;
}

function u32le(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
}

/** u32 LE 256 | u32 LE key type | u32 LE cipher | RSA-OAEP(SHA-1) of a fresh AES-128 key. */
export function locoHandshake(keyType: number, cipher: LocoCipher): { handshake: Buffer; aesKey: Buffer } {
  const aesKey = randomBytes(16);
  const encrypted = publicEncrypt({ key: locoServerKey(), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, aesKey);
  return { handshake: Buffer.concat([u32le(encrypted.length), u32le(keyType), u32le(cipher), encrypted]), aesKey };
}

/** A minimal BSON document of string fields. */
export function bson(fields: Record<string, string>): Buffer {
  const parts = Object.entries(fields).map(([key, value]) => {
    const text = Buffer.from(`${value}\0`, 'utf8');
    return Buffer.concat([Buffer.from([0x02]), Buffer.from(`${key}\0`, 'utf8'), u32le(text.length), text]);
  });
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  return Buffer.concat([u32le(body.length + 4), body]);
}

/** A plaintext LOCO packet: id | status 0 | method (11 bytes, NUL-padded) | body type 0 | body length | BSON. */
export function locoPacket(id: number, method: string, body: Buffer): Buffer {
  const name = Buffer.alloc(11);
  name.write(method, 'ascii');
  const status = Buffer.alloc(2);
  return Buffer.concat([u32le(id), status, name, Buffer.from([0]), u32le(body.length), body]);
}

/** One encrypted frame: u32 LE size | IV (16, CFB) or nonce (12, GCM) | ciphertext (| tag, GCM). */
export function locoFrame(cipher: LocoCipher, aesKey: Buffer, plaintext: Buffer): Buffer {
  if (cipher === 2) {
    const iv = randomBytes(16);
    const c = createCipheriv('aes-128-cfb', aesKey, iv);
    const sealed = Buffer.concat([iv, c.update(plaintext), c.final()]);
    return Buffer.concat([u32le(sealed.length), sealed]);
  }
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-128-gcm', aesKey, nonce);
  const sealed = Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
  return Buffer.concat([u32le(sealed.length), sealed]);
}

/** What a client sends first on a check-in or chat connection: the handshake, and optionally its first frame in the same segment. */
export function locoFirstSegment(keyType: number, cipher: LocoCipher, withFrame: boolean): Buffer {
  const { handshake, aesKey } = locoHandshake(keyType, cipher);
  if (!withFrame) return handshake;
  const checkin = locoPacket(1, 'CHECKIN', bson({ userId: '123456789', os: 'android', ntype: '0', appVer: '25.9.2', lang: 'ko' }));
  return Buffer.concat([handshake, locoFrame(cipher, aesKey, checkin)]);
}

import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { classifyFirstBytes } from '../../../../src/proxy/inspect/first-bytes.js';
import { LOCO_HANDSHAKE_BYTES, recognizeLoco } from '../../../../src/proxy/inspect/loco.js';
import { prng } from '../../../support/dns-message.js';
import { bson, locoFirstSegment, locoHandshake, locoPacket, type LocoCipher } from '../../../support/loco.js';

const KEY_TYPES = [5, 12, 14, 15, 16];
const CIPHERS: LocoCipher[] = [2, 3];
const CASES = KEY_TYPES.flatMap((keyType) => CIPHERS.map((cipher) => [keyType, cipher] as const));

describe('LOCO secure handshakes, built to the documented layout', () => {
  it.each(CASES)('key type %i, cipher %i: alone, and followed by its first frame in the same segment', (keyType, cipher) => {
    for (let i = 0; i < 20; i++) {
      const alone = locoFirstSegment(keyType, cipher, false);
      expect(alone.length).toBe(LOCO_HANDSHAKE_BYTES);
      expect(recognizeLoco(alone)).toBe('loco');
      expect(classifyFirstBytes(alone)).toBe('loco');
      const withFrame = locoFirstSegment(keyType, cipher, true);
      expect(recognizeLoco(withFrame)).toBe('loco');
      expect(classifyFirstBytes(withFrame)).toBe('loco');
    }
  });

  it('a handshake cut anywhere from byte 4 on is waited for, then recognised whole', () => {
    const segment = locoFirstSegment(15, 2, true);
    for (let cut = 4; cut < LOCO_HANDSHAKE_BYTES; cut++) {
      expect(classifyFirstBytes(segment.subarray(0, cut)), `cut at ${cut}`).toBe('need-more');
    }
    for (let cut = LOCO_HANDSHAKE_BYTES; cut <= segment.length; cut++) {
      expect(classifyFirstBytes(segment.subarray(0, cut)), `cut at ${cut}`).toBe('loco');
    }
  });

  it('near misses are not LOCO: another key length, cipher or key type, a low-entropy key, an impossible first frame', () => {
    const { handshake } = locoHandshake(15, 3);
    const variant = (offset: number, value: number): Buffer => {
      const copy = Buffer.from(handshake);
      copy.writeUInt32LE(value, offset);
      return copy;
    };
    expect(recognizeLoco(variant(0, 128))).toBe('not-loco');
    expect(recognizeLoco(variant(0, 512))).toBe('not-loco');
    expect(recognizeLoco(variant(4, 0))).toBe('not-loco');
    expect(recognizeLoco(variant(4, 0x100))).toBe('not-loco');
    expect(recognizeLoco(variant(8, 1))).toBe('not-loco');
    expect(recognizeLoco(variant(8, 4))).toBe('not-loco');
    const zeros = Buffer.concat([handshake.subarray(0, 12), Buffer.alloc(256)]);
    expect(recognizeLoco(zeros)).toBe('not-loco');
    const text = Buffer.concat([handshake.subarray(0, 12), Buffer.from('x'.repeat(256))]);
    expect(recognizeLoco(text)).toBe('not-loco');
    const hugeFrame = Buffer.concat([handshake, Buffer.from([0xff, 0xff, 0xff, 0x7f])]);
    expect(recognizeLoco(hugeFrame)).toBe('not-loco');
    const emptyFrame = Buffer.concat([handshake, Buffer.from([4, 0, 0, 0])]);
    expect(recognizeLoco(emptyFrame)).toBe('not-loco');
  });
});

describe('LOCO plaintext packets (legacy clients)', () => {
  it.each(['CHECKIN', 'GETCONF', 'BUY', 'LOGINLIST', 'MSG'])('%s with a BSON body', (method) => {
    const packet = locoPacket(0xffffffff, method, bson({ userId: '1', os: 'android' }));
    expect(recognizeLoco(packet)).toBe('loco');
    expect(classifyFirstBytes(packet)).toBe('loco');
    expect(classifyFirstBytes(packet.subarray(0, 20))).toBe('need-more');
  });

  it('a header whose body length disagrees with the BSON document is not LOCO', () => {
    const packet = locoPacket(1, 'CHECKIN', bson({ a: 'b' }));
    packet.writeUInt32LE(packet.readUInt32LE(18) + 1, 18);
    expect(recognizeLoco(packet)).toBe('not-loco');
  });
});

// ---- false positives: the first bytes clients of other protocols send ------------------------

const FIXTURES = fileURLToPath(new URL('../../../fixtures/client-hello/', import.meta.url));

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function lengthPrefixed16(body: Buffer): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(body.length);
  return Buffer.concat([b, body]);
}

function lengthPrefixed32(body: Buffer): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(body.length);
  return Buffer.concat([b, body]);
}

/** First client bytes of other protocols, as their clients send them. */
function otherProtocols(): [string, Buffer][] {
  const hellos: [string, Buffer][] = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => [`TLS ClientHello ${f}`, readFileSync(`${FIXTURES}${f}`)]);
  const dnsQuery = (length: number): Buffer => lengthPrefixed16(Buffer.concat([hex('0000 0100 0001 0000 0000 0000'), randomBytes(length - 12)]));
  return [
    ...hellos,
    ['TLS 1.3 ClientHello record header', hex('16 03 01 02 00 01 00 01 fc 03 03')],
    ['HTTP GET', Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\n\r\n')],
    ['HTTP POST', Buffer.from('POST /api HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\n{}')],
    ['HTTP CONNECT', Buffer.from('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')],
    ['HTTP/2 prior knowledge', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
    ['SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n')],
    ['SSH banner and KEXINIT', Buffer.concat([Buffer.from('SSH-2.0-OpenSSH_9.2p1\r\n'), lengthPrefixed32(Buffer.concat([hex('0a 14'), randomBytes(16), Buffer.alloc(300, 0x61)]))])],
    ['SMTP EHLO', Buffer.from('EHLO mail.example.com\r\n')],
    ['SMTP HELO', Buffer.from('HELO x\r\n')],
    ['SMTP STARTTLS', Buffer.from('STARTTLS\r\n')],
    ['POP3 USER', Buffer.from('USER alice\r\n')],
    ['IMAP login', Buffer.from('a001 LOGIN alice secret\r\n')],
    ['FTP USER', Buffer.from('USER anonymous\r\n')],
    ['RDP X.224 Connection Request', hex('03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 03 00 00 00')],
    ['RDP with cookie', Buffer.concat([hex('03 00 00 2a 25 e0 00 00 00 00 00'), Buffer.from('Cookie: mstshash=alice\r\n'), hex('01 00 08 00 0b 00 00 00')])],
    ['OpenVPN TCP hard reset', lengthPrefixed16(Buffer.concat([hex('38'), randomBytes(8), hex('00 00 00 00 00')]))],
    ['OpenVPN TCP with tls-auth', lengthPrefixed16(Buffer.concat([hex('38'), randomBytes(8), randomBytes(20), hex('00 00 00 01'), hex('5f 00 00 00'), hex('00 00 00 00 00')]))],
    ['MQTT 3.1.1 CONNECT', hex('10 10 00 04 4d 51 54 54 04 02 00 3c 00 04 63 6c 69 31')],
    ['MQTT 5 CONNECT', hex('10 11 00 04 4d 51 54 54 05 02 00 3c 00 00 04 63 6c 69 31')],
    ['PostgreSQL SSLRequest', hex('00 00 00 08 04 d2 16 2f')],
    ['PostgreSQL startup', Buffer.concat([hex('00 00 00 29 00 03 00 00'), Buffer.from('user\0alice\0database\0app\0\0')])],
    ['Redis PING', Buffer.from('*1\r\n$4\r\nPING\r\n')],
    ['Memcached', Buffer.from('get key\r\n')],
    ['SMB2 NEGOTIATE', Buffer.concat([hex('00 00 00 a4 fe 53 4d 42 40 00'), Buffer.alloc(154)])],
    ['SMB1 NEGOTIATE', Buffer.concat([hex('00 00 00 54 ff 53 4d 42 72 00'), Buffer.alloc(74)])],
    ['DNS over TCP, 256-byte message', dnsQuery(256)],
    ['DNS over TCP, 300-byte message', dnsQuery(300)],
    ['DNS over TCP, short query', lengthPrefixed16(hex('abcd 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 0001 0001'))],
    ['BitTorrent handshake', Buffer.concat([Buffer.from('\x13BitTorrent protocol', 'latin1'), Buffer.alloc(8), randomBytes(40)])],
    ['XMPP stream', Buffer.from("<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' version='1.0'>")],
    ['SOCKS5 greeting', hex('05 01 00')],
    ['SOCKS4 connect', Buffer.concat([hex('04 01 01 bb 5d b8 d8 22'), Buffer.from('user\0')])],
    ['Kerberos AS-REQ over TCP', lengthPrefixed32(Buffer.concat([hex('6a 82 01 00 30 81 fd a1 03 02 01 05'), randomBytes(200)]))],
    ['LDAP bind', hex('30 0c 02 01 01 60 07 02 01 03 04 00 80 00')],
    ['RTMP C0+C1', Buffer.concat([hex('03'), hex('00 00 00 00 00 00 00 00'), randomBytes(1528)])],
    ['WebSocket upgrade', Buffer.from('GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')],
    ['MySQL client handshake response', Buffer.concat([hex('55 00 00 01 8d a6 0f 00 00 00 00 01 21'), Buffer.alloc(23), Buffer.from('root\0')])],
    ['MongoDB OP_MSG hello', Buffer.concat([hex('3a 00 00 00 01 00 00 00 00 00 00 00 dd 07 00 00 00 00 00 00 00'), bson({ hello: '1', $db: 'admin' })])],
    ['Minecraft handshake', hex('10 00 f5 05 09 6c 6f 63 61 6c 68 6f 73 74 63 dd 01')],
    ['NTP-over-TCP-like zeros', Buffer.alloc(48)],
    ['IRC', Buffer.from('NICK alice\r\nUSER alice 0 * :Alice\r\n')],
    ['Git protocol', Buffer.from('0032git-upload-pack /project.git\0host=example.com\0')],
    ['Java RMI', hex('4a 52 4d 49 00 02 4b')],
    ['VNC (client version)', Buffer.from('RFB 003.008\n')],
    ['STUN over TCP', Buffer.concat([hex('00 01 00 00 21 12 a4 42'), randomBytes(12)])],
    ['AMQP', Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')],
    ['Telnet negotiation', hex('ff fd 18 ff fd 20 ff fd 23 ff fd 27')],
  ];
}

describe('false positives: other protocols are never taken for LOCO', () => {
  it.each(otherProtocols())('%s', (_name, bytes) => {
    expect(recognizeLoco(bytes)).not.toBe('loco');
    const kind = classifyFirstBytes(bytes);
    expect(kind).not.toBe('loco');
    // A whole first message is never left waiting: its client may wait for the server to answer.
    expect(kind).not.toBe('need-more');
  });

  it('100,000 random first segments (1 to 2,000 bytes) are never LOCO', () => {
    const random = prng(20261206);
    let loco = 0;
    for (let i = 0; i < 100_000; i++) {
      const length = 1 + Math.floor(random() * 2_000);
      const bytes = randomBytes(length);
      if (recognizeLoco(bytes) === 'loco' || classifyFirstBytes(bytes) === 'loco') loco++;
    }
    expect(loco).toBe(0);
  });

  it('100,000 fuzzed LOCO look-alikes (the header kept, the rest broken) are never LOCO', () => {
    const random = prng(7);
    const { handshake } = locoHandshake(16, 3);
    let loco = 0;
    for (let i = 0; i < 100_000; i++) {
      const bytes = Buffer.from(handshake);
      // Break one header field, or make the key low-entropy, or add an impossible frame length.
      const mode = Math.floor(random() * 4);
      if (mode === 0) {
        const at = Math.floor(random() * 12);
        bytes[at] = bytes[at]! ^ (1 + Math.floor(random() * 255));
      }
      if (mode === 1) bytes.fill(Math.floor(random() * 256), 12 + Math.floor(random() * 64), 268);
      if (mode === 2) bytes.fill(0x41 + Math.floor(random() * 26), 12, 12 + 150 + Math.floor(random() * 100));
      const tail = mode === 3 ? Buffer.from([Math.floor(random() * 17), 0, 0, 0]) : Buffer.alloc(0);
      const candidate = Buffer.concat([bytes, tail]);
      // Only a change that leaves a valid header (key type 1-255) may still be LOCO.
      const isStillValid = mode === 0 && candidate.readUInt32LE(0) === 256 && candidate.readUInt32LE(4) >= 1 && candidate.readUInt32LE(4) <= 255 && [2, 3].includes(candidate.readUInt32LE(8));
      if (!isStillValid && recognizeLoco(candidate) === 'loco') loco++;
    }
    expect(loco).toBe(0);
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CryptoStream, QUIC_V1, QUIC_V2, clientInitialKeys, readInitialPacket, readVarint } from '../../../../src/proxy/inspect/quic-initial.js';
import { readClientHelloMessage } from '../../../../src/proxy/inspect/client-hello.js';
import { browserHello, clientInitials } from '../../../support/quic-initial.js';

function fixture(name: string): Buffer {
  return Buffer.from(readFileSync(new URL(`../../../fixtures/quic/${name}.hex`, import.meta.url), 'utf8').replace(/\s+/g, ''), 'hex');
}

const DCID = Buffer.from('8394c8f03e515708', 'hex');

describe('QUIC Initial keys', () => {
  it('RFC 9001 A.1: client key, iv and hp for QUIC v1', () => {
    const keys = clientInitialKeys(QUIC_V1, DCID)!;
    expect(keys.key.toString('hex')).toBe('1f369613dd76d5467730efcbe3b1a22d');
    expect(keys.iv.toString('hex')).toBe('fa044b2f42a3fd3b46fb255c');
    expect(keys.hp.toString('hex')).toBe('9f50449e04a0e810283a1e9933adedd2');
  });

  it('RFC 9369 A.1: client key, iv and hp for QUIC v2', () => {
    const keys = clientInitialKeys(QUIC_V2, DCID)!;
    expect(keys.key.toString('hex')).toBe('8b1a0bc121284290a29e0971b5cd045d');
    expect(keys.iv.toString('hex')).toBe('91f73e2351d8fa91660e909f');
    expect(keys.hp.toString('hex')).toBe('45b95e15235d6f45a6b19cbcb0294ba9');
  });

  it('no keys for an unknown version', () => {
    expect(clientInitialKeys(0xff00001d, DCID)).toBeNull();
  });
});

describe('readInitialPacket', () => {
  it.each([
    ['RFC 9001 A.2 (v1)', 'rfc9001-a2-client-initial', QUIC_V1],
    ['RFC 9369 A.2 (v2)', 'rfc9369-a2-client-initial', QUIC_V2],
  ])('%s decrypts to one CRYPTO frame whose ClientHello names example.com', (_name, file, version) => {
    const result = readInitialPacket(fixture(file));
    expect(result.kind).toBe('initial');
    if (result.kind !== 'initial') return;
    expect(result).toMatchObject({ version, packetNumber: 2, packetLength: 1200 });
    expect(result.dcid.equals(DCID)).toBe(true);
    expect(result.crypto).toHaveLength(1);
    expect(result.crypto[0]!.offset).toBe(0);
    expect(result.crypto[0]!.data.length).toBe(241);
    expect(readClientHelloMessage(result.crypto[0]!.data, 65_536)).toMatchObject({ kind: 'found', sni: 'example.com' });
  });

  it('a flipped bit anywhere in the protected payload fails authentication: not-initial, no throw', () => {
    const packet = fixture('rfc9001-a2-client-initial');
    for (const at of [30, 200, 700, 1199]) {
      const damaged = Buffer.from(packet);
      damaged[at]! ^= 0x01;
      expect(readInitialPacket(damaged), `byte ${at}`).toEqual({ kind: 'not-initial', reason: 'decrypt' });
    }
  });

  it('refuses what is not a client Initial, and truncated or random input, without throwing', () => {
    const packet = fixture('rfc9001-a2-client-initial');
    expect(readInitialPacket(Buffer.from([0x40, 1, 2, 3, 4, 5, 6, 7]))).toMatchObject({ kind: 'not-initial', reason: 'short-header' });
    const handshake = Buffer.from(packet);
    handshake[0] = (handshake[0]! & 0xcf) | 0x20; // long header type Handshake
    expect(readInitialPacket(handshake)).toMatchObject({ reason: 'packet-type' });
    const otherVersion = Buffer.from(packet);
    otherVersion.writeUInt32BE(0xff00001d, 1);
    expect(readInitialPacket(otherVersion)).toMatchObject({ reason: 'version' });
    for (const cut of [6, 20, 100, 1199]) expect(readInitialPacket(packet.subarray(0, cut)).kind, `cut at ${cut}`).toBe('not-initial');
    let seed = 7;
    for (let i = 0; i < 2_000; i++) {
      const random = Buffer.alloc(1 + (i % 1300));
      for (let j = 0; j < random.length; j++) random[j] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      random[0]! |= 0xc0;
      expect(() => readInitialPacket(random)).not.toThrow();
    }
  });
});

describe('CryptoStream', () => {
  it('reassembles a ClientHello split over frames that arrive out of order and overlapping', () => {
    const result = readInitialPacket(fixture('rfc9001-a2-client-initial'));
    if (result.kind !== 'initial') throw new Error('fixture did not decode');
    const hello = result.crypto[0]!.data;
    const stream = new CryptoStream(65_536);
    expect(stream.add([{ offset: 150, data: hello.subarray(150) }])).toBe(true);
    expect(readClientHelloMessage(stream.contiguous(), 65_536).kind).toBe('need-more');
    stream.add([{ offset: 60, data: hello.subarray(60, 160) }]);
    expect(readClientHelloMessage(stream.contiguous(), 65_536).kind).toBe('need-more');
    stream.add([{ offset: 0, data: hello.subarray(0, 70) }]);
    expect(readClientHelloMessage(stream.contiguous(), 65_536)).toMatchObject({ kind: 'found', sni: 'example.com' });
  });

  it('reads a post-quantum ClientHello spread over three v1 or v2 Initials, last packet first', () => {
    for (const version of [QUIC_V1, QUIC_V2]) {
      const datagrams = clientInitials(browserHello('talk-pilsner.kakao.com'), { version, pieces: 3 });
      expect(datagrams.every((d) => d.length === 1200)).toBe(true);
      const stream = new CryptoStream(65_536);
      for (const datagram of [...datagrams].reverse()) {
        const packet = readInitialPacket(datagram);
        if (packet.kind !== 'initial') throw new Error(`not decoded: ${packet.reason}`);
        expect(packet.version).toBe(version);
        stream.add(packet.crypto);
      }
      expect(readClientHelloMessage(stream.contiguous(), 65_536)).toMatchObject({ kind: 'found', sni: 'talk-pilsner.kakao.com', alpn: ['h3'] });
    }
  });

  it('refuses frames past its cap', () => {
    expect(new CryptoStream(1_000).add([{ offset: 990, data: Buffer.alloc(20) }])).toBe(false);
  });
});

describe('readVarint', () => {
  it('reads the RFC 9000 A.1 examples', () => {
    expect(readVarint(Buffer.from('c2197c5eff14e88c', 'hex'), 0)).toEqual({ value: Number(151_288_809_941_952_652n), size: 8 });
    expect(readVarint(Buffer.from('9d7f3e7d', 'hex'), 0)).toEqual({ value: 494_878_333, size: 4 });
    expect(readVarint(Buffer.from('7bbd', 'hex'), 0)).toEqual({ value: 15_293, size: 2 });
    expect(readVarint(Buffer.from('25', 'hex'), 0)).toEqual({ value: 37, size: 1 });
    expect(readVarint(Buffer.from('7b', 'hex'), 0)).toBeNull();
  });
});

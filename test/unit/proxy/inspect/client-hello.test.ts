import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../../src/config/defaults.js';
import { readClientHello, type ClientHelloResult } from '../../../../src/proxy/inspect/client-hello.js';
import {
  alpn,
  commonExtensions,
  handshake,
  helloBody,
  helloCorpus,
  malformedCorpus,
  mutate,
  padding,
  pqHello,
  prng,
  records,
  serverName,
  shuffled,
  simpleHello,
  splitAt,
  type Expected,
} from '../../../support/client-hello.js';

const MAX = DEFAULTS.clientHelloMaxBytes;
const FIXTURES = fileURLToPath(new URL('../../../fixtures/client-hello/', import.meta.url));

function fixture(file: string): Buffer {
  return readFileSync(`${FIXTURES}${file}`);
}

/**
 * Feeds segments the way the proxy does: the buffer grows, the reader is asked again each time.
 * Returns every intermediate result and the last one.
 */
function feed(segments: readonly Buffer[], maxBytes = MAX): { before: ClientHelloResult[]; last: ClientHelloResult } {
  let buffered = Buffer.alloc(0);
  const results: ClientHelloResult[] = [];
  for (const segment of segments) {
    buffered = Buffer.concat([buffered, segment]);
    results.push(readClientHello(buffered, maxBytes));
  }
  return { before: results.slice(0, -1), last: results[results.length - 1]! };
}

function expectResult(result: ClientHelloResult, expected: Expected, total: number): void {
  if (expected.kind === 'invalid') {
    expect(result).toEqual({ kind: 'invalid', reason: expected.reason });
    return;
  }
  expect(result.kind).toBe(expected.kind);
  if (result.kind !== 'found' && result.kind !== 'no-name') return;
  expect(result.consumed).toBe(total);
  if (expected.kind === 'found' && result.kind === 'found') {
    expect(result.sni).toBe(expected.sni);
    if (expected.alpn !== undefined) expect(result.alpn).toEqual(expected.alpn);
    if (expected.hasEch !== undefined) expect(result.hasEch).toBe(expected.hasEch);
  }
}

describe('readClientHello on real node:tls hellos (test/fixtures/client-hello)', () => {
  it.each([
    ['node-sni.bin', { kind: 'found', sni: 'allowed.test', alpn: [], hasEch: false }],
    ['node-blocked-sni.bin', { kind: 'found', sni: 'talk-pilsner.kakao.com' }],
    ['node-mixed-case-sni.bin', { kind: 'found', sni: 'talk-pilsner.kakao.com' }],
    ['node-trailing-dot-sni.bin', { kind: 'found', sni: 'legy-jp.line-apps.com' }],
    ['node-no-sni.bin', { kind: 'no-name' }],
    ['node-alpn.bin', { kind: 'found', sni: 'allowed.test', alpn: ['h2', 'http/1.1'] }],
  ] as [string, Expected][])('%s', (file, expected) => {
    const bytes = fixture(file);
    expectResult(readClientHello(bytes, MAX), expected, bytes.length);
  });

  it('keeps the name as sent on the wire (mixed case, trailing dot): only the reader normalises', () => {
    expect(fixture('node-mixed-case-sni.bin').includes('Talk-Pilsner.KAKAO.com')).toBe(true);
    expect(fixture('node-trailing-dot-sni.bin').includes('legy-jp.line-apps.com.')).toBe(true);
  });

  it.each(['node-sni.bin', 'node-no-sni.bin', 'node-alpn.bin', 'node-mixed-case-sni.bin'])('%s: every prefix is need-more, every two-segment cut reads the same', (file) => {
    const bytes = fixture(file);
    const whole = readClientHello(bytes, MAX);
    for (let cut = 1; cut < bytes.length; cut++) {
      const { before, last } = feed([bytes.subarray(0, cut), bytes.subarray(cut)]);
      expect(before, `cut at ${cut}`).toEqual([{ kind: 'need-more' }]);
      expect(last, `cut at ${cut}`).toEqual(whole);
    }
  });
});

describe('readClientHello on the hand-built corpus', () => {
  const corpus = helloCorpus();

  it.each(corpus.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expectResult(readClientHello(c.bytes, MAX), c.expected, c.bytes.length);
  });

  it.each(corpus.map((c) => [c.name, c] as const))('%s: fed one byte at a time, need-more until the last byte', (_name, c) => {
    const segments = splitAt(
      c.bytes,
      Array.from({ length: c.bytes.length - 1 }, (_, i) => i + 1),
    );
    const { before, last } = feed(segments);
    expect(before.every((r) => r.kind === 'need-more')).toBe(true);
    expect(before).toHaveLength(c.bytes.length - 1);
    expect(last).toEqual(readClientHello(c.bytes, MAX));
  });

  it.each(corpus.map((c) => [c.name, c] as const))('%s: cut in two at every byte, the same result', (_name, c) => {
    const whole = readClientHello(c.bytes, MAX);
    for (let cut = 1; cut < c.bytes.length; cut++) {
      const { before, last } = feed([c.bytes.subarray(0, cut), c.bytes.subarray(cut)]);
      expect(before[0]!.kind, `cut at ${cut}`).toBe('need-more');
      expect(last, `cut at ${cut}`).toEqual(whole);
    }
  });

  it('reads a post-quantum-size hello (X25519MLKEM768 key share) of 1.6 KB and more', () => {
    for (const total of [1_700, 2_048, 4_096, 8_192]) {
      const bytes = pqHello('allowed.test', total);
      expect(bytes.length).toBeGreaterThan(1_600);
      expect(readClientHello(bytes, MAX)).toMatchObject({ kind: 'found', sni: 'allowed.test', consumed: bytes.length });
    }
  });

  it('reads a hello larger than one record (20 KB over two records, within the 64 KB cap)', () => {
    const message = handshake(helloBody({ extensions: [serverName('talk-pilsner.kakao.com'), ...commonExtensions(), padding(20_000)] }));
    const bytes = records(message);
    expect(bytes.length).toBeGreaterThan(16_384 + 5);
    expect(readClientHello(bytes, MAX)).toMatchObject({ kind: 'found', sni: 'talk-pilsner.kakao.com', consumed: bytes.length });
  });

  it('reports too-large as soon as a record header announces more than the cap, without waiting for the bytes', () => {
    const bytes = pqHello('allowed.test', 8_192);
    expect(readClientHello(bytes.subarray(0, 5), 4_096)).toEqual({ kind: 'invalid', reason: 'too-large' });
    // A handshake header announcing more than the cap, in small records.
    const small = records(bytes.subarray(5), 100);
    expect(readClientHello(small.subarray(0, 9), 4_096)).toEqual({ kind: 'invalid', reason: 'too-large' });
    expect(readClientHello(bytes, 16_384)).toMatchObject({ kind: 'found' });
  });

  it('counts only the hello in consumed when more bytes follow it (next records are not part of it)', () => {
    const hello = simpleHello('allowed.test');
    const withMore = Buffer.concat([hello, Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01]), Buffer.from([0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb])]);
    expect(readClientHello(withMore, MAX)).toMatchObject({ kind: 'found', consumed: hello.length });
  });

  it('does not read past a hello split into records when it ends exactly at a record boundary', () => {
    const bytes = Buffer.concat([records(handshake(helloBody({ extensions: [serverName('allowed.test')] })), 30), Buffer.from([0x15])]);
    expect(readClientHello(bytes, MAX)).toMatchObject({ kind: 'found', consumed: bytes.length - 1 });
  });
});

describe('readClientHello refuses what a TLS stack refuses', () => {
  it.each(malformedCorpus().map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expectResult(readClientHello(c.bytes, MAX), c.expected, c.bytes.length);
    // No prefix reads as a hello with a destination either.
    for (let cut = 1; cut < c.bytes.length; cut++) {
      const kind = readClientHello(c.bytes.subarray(0, cut), MAX).kind;
      expect(kind === 'need-more' || kind === 'invalid', `prefix of ${cut} bytes: ${kind}`).toBe(true);
    }
  });

  it('says need-more for an empty buffer and for a lone record header', () => {
    expect(readClientHello(Buffer.alloc(0), MAX)).toEqual({ kind: 'need-more' });
    expect(readClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]), MAX)).toEqual({ kind: 'need-more' });
  });
});

describe('readClientHello properties', () => {
  const seeds = [simpleHello('allowed.test'), pqHello('talk-pilsner.kakao.com', 2_048), records(simpleHello('legy-jp.line-apps.com').subarray(5), 16), fixture('node-alpn.bin')];

  it('random mutations of a valid hello never throw; consumed never exceeds the input; a name read is normalised', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: seeds.length - 1 }), fc.integer(), fc.integer({ min: 1, max: 4 }), (which, seed, rounds) => {
        const random = prng(seed);
        let bytes = seeds[which]!;
        for (let i = 0; i < rounds; i++) bytes = mutate(bytes, random);
        const result = readClientHello(bytes, MAX);
        if (result.kind === 'found' || result.kind === 'no-name') {
          expect(result.consumed).toBeGreaterThan(0);
          expect(result.consumed).toBeLessThanOrEqual(bytes.length);
        }
        if (result.kind === 'found') {
          expect(result.sni).not.toBe('');
          expect(result.sni).toBe(result.sni.toLowerCase());
          expect(result.sni.endsWith('.')).toBe(false);
          expect(/^[\x21-\x7e]+$/.test(result.sni)).toBe(true);
        }
      }),
      { numRuns: 5_000 },
    );
  });

  it('random byte strings never throw and never exceed the input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (raw, asHandshake) => {
        const bytes = asHandshake ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01, raw.length >> 8, raw.length & 0xff, 0x01]), raw]) : Buffer.from(raw);
        const result = readClientHello(bytes, MAX);
        if (result.kind === 'found' || result.kind === 'no-name') expect(result.consumed).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: 3_000 },
    );
  });

  it('any well-formed hello, any extension order, any record size, any split: the name, once, at the end', () => {
    fc.assert(
      fc.property(
        fc.domain(),
        fc.boolean(),
        fc.integer(),
        fc.integer({ min: 1, max: 400 }),
        fc.array(fc.integer({ min: 1, max: 2_000 }), { maxLength: 4 }),
        (domain, isUpper, seed, recordSize, cuts) => {
          const wire = isUpper ? `${domain.toUpperCase()}.` : domain;
          const extensions = shuffled([serverName(wire), alpn('h2'), ...commonExtensions(), padding(seed & 0x3ff)], prng(seed));
          const bytes = records(handshake(helloBody({ extensions, seed })), recordSize);
          const offsets = [...new Set(cuts.map((c) => c % bytes.length).filter((c) => c > 0))].sort((a, b) => a - b);
          const { before, last } = feed(splitAt(bytes, offsets));
          expect(before.every((r) => r.kind === 'need-more')).toBe(true);
          expect(last).toMatchObject({ kind: 'found', sni: domain.toLowerCase(), consumed: bytes.length, alpn: ['h2'] });
        },
      ),
      { numRuns: 500 },
    );
  });
});

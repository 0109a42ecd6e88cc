import { Packet } from 'dns2';
import { describe, expect, it } from 'vitest';
import { EDE_BLOCKED, blockedAnswer, type BlockMode } from '../../../src/dns/block.js';
import { parseQuery, type Query } from '../../../src/dns/wire.js';
import { T, buildQuery, decode, type Decoded } from '../../support/dns-message.js';

const QTYPES = { A: T.A, AAAA: T.AAAA, HTTPS: T.HTTPS, MX: T.MX, TXT: T.TXT, ANY: T.ANY } as const;
const MODES: BlockMode[] = ['nxdomain', 'nullip', 'refused'];
const NEGATIVE_TTL = 77;

function answer(mode: BlockMode, qtype: number, options: { edns: boolean; name?: string; app?: 'kakaotalk' | 'line' | null; version?: number }): Decoded {
  const buf = buildQuery({ id: 0x5151, name: options.name ?? 'Talk-Pilsner.Kakao.com', qtype, edns: options.edns ? { dnssecOk: true } : null });
  const parsed = parseQuery(buf);
  if (parsed.kind !== 'query') throw new Error(parsed.kind);
  const query: Query = parsed.query;
  const out = blockedAnswer(buf, query, options.app === undefined ? 'kakaotalk' : options.app, { mode, negativeTtlSec: NEGATIVE_TTL }, options.version ?? 9);
  // every block answer is a well-formed message dns2 can read too
  expect(() => Packet.parse(out)).not.toThrow();
  return decode(out);
}

describe('blockedAnswer: each mode for each qtype', () => {
  for (const mode of MODES) {
    for (const [typeName, qtype] of Object.entries(QTYPES)) {
      it(`${mode} / ${typeName}`, () => {
        const out = answer(mode, qtype, { edns: true });
        expect(out).toMatchObject({ id: 0x5151, qr: true, rd: true, ra: true, tc: false });
        expect(out.questions).toEqual([{ name: 'Talk-Pilsner.Kakao.com', type: qtype, class: 1 }]);
        expect(out.ede).toEqual({ code: EDE_BLOCKED, text: 'kakaotalk' });
        expect(out.opt).toMatchObject({ udpSize: 1232, dnssecOk: true, version: 0 });

        const isNullAddress = mode === 'nullip' && (qtype === T.A || qtype === T.AAAA);
        const expectedRcode = mode === 'nxdomain' ? 3 : mode === 'refused' ? 5 : 0;
        expect(out.rcode).toBe(expectedRcode);

        if (isNullAddress) {
          expect(out.answers.map((a) => [a.name, a.type, a.ttl, a.value])).toEqual([['Talk-Pilsner.Kakao.com', qtype, NEGATIVE_TTL, qtype === T.A ? '0.0.0.0' : '0:0:0:0:0:0:0:0']]);
        } else {
          expect(out.answers).toEqual([]);
        }

        if (mode === 'refused' || isNullAddress) {
          expect(out.authority).toEqual([]);
        } else {
          expect(out.authority).toHaveLength(1);
          const soa = out.authority[0]!;
          expect(soa.name).toBe('Talk-Pilsner.Kakao.com');
          expect(soa.type).toBe(T.SOA);
          expect(soa.ttl).toBe(NEGATIVE_TTL);
          expect(soa.value).toMatchObject({ mname: 'portcullis.invalid', rname: 'blocked.portcullis.invalid', serial: 9, minimum: NEGATIVE_TTL });
        }
      });
    }
  }
});

describe('blockedAnswer: EDE only with EDNS', () => {
  it.each(MODES)('%s without EDNS: no OPT, no EDE, same rcode and sections', (mode) => {
    for (const qtype of Object.values(QTYPES)) {
      const withEdns = answer(mode, qtype, { edns: true });
      const without = answer(mode, qtype, { edns: false });
      expect(without.opt).toBeNull();
      expect(without.ede).toBeNull();
      expect(without.rcode).toBe(withEdns.rcode);
      expect(without.answers).toEqual(withEdns.answers);
      expect(without.authority).toEqual(withEdns.authority);
    }
  });

  it('names the app in the EDE text; "custom" for a rule without an app', () => {
    expect(answer('nxdomain', T.A, { edns: true, app: 'line' }).ede).toEqual({ code: 15, text: 'line' });
    expect(answer('nxdomain', T.A, { edns: true, app: null }).ede).toEqual({ code: 15, text: 'custom' });
  });

  it('the SOA serial follows the policy version', () => {
    expect(answer('nxdomain', T.A, { edns: false, version: 1234 }).authority[0]?.value).toMatchObject({ serial: 1234 });
  });

  it('each call builds a new buffer (a block answer is never shared and patched)', () => {
    const buf = buildQuery({ name: 'a.kakao.com' });
    const parsed = parseQuery(buf);
    if (parsed.kind !== 'query') throw new Error(parsed.kind);
    const one = blockedAnswer(buf, parsed.query, 'kakaotalk', { mode: 'nxdomain', negativeTtlSec: 60 }, 1);
    const two = blockedAnswer(buf, parsed.query, 'kakaotalk', { mode: 'nxdomain', negativeTtlSec: 60 }, 1);
    one.fill(0);
    expect(decode(two).rcode).toBe(3);
  });
});

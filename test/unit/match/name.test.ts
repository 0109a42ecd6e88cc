import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { PortcullisError } from '../../../src/errors.js';
import {
  nameProblem,
  normalizeQueryName,
  parentSuffixStart,
  parseRuleName,
  tryParseRuleName,
  type NameProblem,
} from '../../../src/match/name.js';

/** Runs fn and returns the PortcullisError it threw; fails the test if it threw nothing else. */
function thrown(fn: () => unknown): PortcullisError {
  try {
    fn();
  } catch (e: unknown) {
    if (e instanceof PortcullisError) return e;
    throw e;
  }
  throw new Error('expected a PortcullisError, nothing was thrown');
}

const label63 = 'a'.repeat(63);
/** 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters, the longest legal name. */
const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

describe('normalizeQueryName', () => {
  it.each([
    ['kakao.com', 'kakao.com'],
    ['KaKaO.CoM', 'kakao.com'],
    ['kakao.com.', 'kakao.com'],
    ['KAKAO.COM...', 'kakao.com'],
    ['talk_box.example', 'talk_box.example'],
  ])('normalises ASCII %j to %j', (input, expected) => {
    expect(normalizeQueryName(input)).toBe(expected);
  });

  it.each([
    ['bücher.example', 'xn--bcher-kva.example'],
    ['BÜCHER.Example.', 'xn--bcher-kva.example'],
    ['ß.com', 'xn--zca.com'],
  ])('maps the Unicode name %j to punycode %j', (input, expected) => {
    expect(normalizeQueryName(input)).toBe(expected);
  });

  it.each([
    ['full-width letters and ideographic dot', 'ｋａｋａｏ。com', 'kakao.com'],
    ['full-width capitals and full-width dot', 'ＫＡＫＡＯ．ＣＯＭ', 'kakao.com'],
    ['half-width ideographic dot', 'kakao｡com', 'kakao.com'],
    ['trailing ideographic dot', 'kakao.com。', 'kakao.com'],
    ['Kelvin sign for K', '\u212Aakao.com', 'kakao.com'],
    ['ligature ff', '\uFB00.com', 'ff.com'],
    ['soft hyphen, which IDNA drops', 'ka\u00ADkao.com', 'kakao.com'],
  ])('sees look-alike spellings as the ASCII name (%s)', (_what, input, expected) => {
    expect(normalizeQueryName(input)).toBe(expected);
  });

  it.each(['', '.', '...', '。'])('returns null for the empty name %j', (input) => {
    expect(normalizeQueryName(input)).toBeNull();
  });

  it('lower-cases a name IDNA refuses instead of refusing it', () => {
    // A zero-width joiner outside its allowed context fails IDNA; the ASCII labels must survive.
    expect(normalizeQueryName('X\u200D.KAKAO.com')).toBe('x\u200D.kakao.com');
  });

  it('keeps ideographic dots as label separators when IDNA refuses the name', () => {
    // Symptom: `\0。kakao.com` normalised to `\0。kakao.com`, which a kakao.com suffix rule missed.
    expect(normalizeQueryName('\u0000。KAKAO．com')).toBe('\u0000.kakao.com');
  });

  it('does not cut a Unicode name at a URL delimiter', () => {
    // Symptom: node:url's host parser cut `ü.a/b.kakao.com` to `xn--tda.a`, past any kakao.com rule.
    for (const delimiter of ['/', '?', '#', '\\']) {
      expect(normalizeQueryName(`ü.a${delimiter}b.kakao.com`)).toBe(`ü.a${delimiter}b.kakao.com`);
    }
  });

  it('does not percent-decode or drop tabs in a Unicode name', () => {
    expect(normalizeQueryName('ü.kak%61o.com')).toBe('ü.kak%61o.com');
    expect(normalizeQueryName('ü.ka\tkao.com')).toBe('ü.ka\tkao.com');
  });

  it('never throws, and returns null or a non-empty name without ASCII capitals or a trailing dot', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' })), (input) => {
        const name = normalizeQueryName(input);
        if (name === null) return;
        expect(name.length).toBeGreaterThan(0);
        expect(name.endsWith('.')).toBe(false);
        expect(name).not.toMatch(/[A-Z]/);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps any spelling of a .kakao.com suffix, whatever comes before it', () => {
    const nasty = fc.constantFrom('/', '?', '#', '\\', '%', '\t', ':', '@', ' ', '.', '。', 'ü', '\u200D', '\u0000', 'A', '-');
    const prefix = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.string({ unit: nasty }));
    const suffix = fc.constantFrom('.kakao.com', '.KAKAO.COM.', '.Kakao.Com..', '.\u212Aakao.com', '。kakao.com', '．kakao｡com');
    fc.assert(
      fc.property(prefix, suffix, (before, after) => {
        const name = normalizeQueryName(before + after);
        expect(name === 'kakao.com' || name?.endsWith('.kakao.com')).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('nameProblem', () => {
  it.each(['kakao.com', 'a.b.kakao.com', 'talk_box.example', 'xn--bcher-kva.example', '123.com', 'a-b.c-d', 'localhost', name253])(
    'accepts %j',
    (name) => {
      expect(nameProblem(name)).toBeNull();
    },
  );

  it.each<[string, NameProblem]>([
    ['', 'empty'],
    [`${name253}c`, 'too-long'],
    ['a..b', 'empty-label'],
    ['.kakao.com', 'empty-label'],
    ['kakao.com.', 'empty-label'],
    [`${label63}a.com`, 'label-too-long'],
    ['a b.com', 'bad-character'],
    ['a/b.com', 'bad-character'],
    ['user@kakao.com', 'bad-character'],
    ['*.kakao.com', 'bad-character'],
    ['Kakao.com', 'bad-character'],
    ['bücher.example', 'bad-character'],
    ['-kakao.com', 'hyphen-at-label-edge'],
    ['kakao-.com', 'hyphen-at-label-edge'],
    ['kakao.-com', 'hyphen-at-label-edge'],
    ['1.2.3.4', 'numeric-tld'],
    ['123', 'numeric-tld'],
    ['kakao.123', 'numeric-tld'],
  ])('reports %j as %s', (name, problem) => {
    expect(nameProblem(name)).toBe(problem);
  });

  it('accepts a 63-character label', () => {
    expect(nameProblem(`${label63}.com`)).toBeNull();
  });
});

describe('parseRuleName', () => {
  it.each([
    ['kakao.com', 'kakao.com'],
    ['  KAKAO.com.  ', 'kakao.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['ｌｉｎｅ。me', 'line.me'],
    [name253, name253],
  ])('parses %j as %j', (input, expected) => {
    expect(parseRuleName(input)).toBe(expected);
  });

  it.each<[string, NameProblem]>([
    ['', 'empty'],
    ['   ', 'empty'],
    ['.', 'empty'],
    ['a..kakao.com', 'empty-label'],
    ['.kakao.com', 'empty-label'],
    [`${label63}a.com`, 'label-too-long'],
    [`${name253}c`, 'too-long'],
    ['kakao com', 'bad-character'],
    ['kakao.com/path', 'bad-character'],
    ['user@kakao.com', 'bad-character'],
    ['-kakao.com', 'hyphen-at-label-edge'],
    ['kakao-.com', 'hyphen-at-label-edge'],
    ['10.0.0.1', 'numeric-tld'],
    ['a\u200D.com', 'idna'],
  ])('rejects %j (%s) with PCL_ERR_INVALID_NAME', (input, problem) => {
    const err = thrown(() => parseRuleName(input));
    expect(err.code).toBe('PCL_ERR_INVALID_NAME');
    expect(err.details).toEqual({ input, problem });
    expect(err.message).toContain(`"${input}"`);
  });

  it.each(['bücher.example/x', 'bücher example', 'user@bücher.example', 'bü%63her.example'])(
    'rejects the Unicode name %j with a character no host name has',
    (input) => {
      expect(thrown(() => parseRuleName(input)).code).toBe('PCL_ERR_INVALID_NAME');
    },
  );
});

describe('tryParseRuleName', () => {
  it('returns the normalised name for a valid one', () => {
    expect(tryParseRuleName('Bücher.Example.')).toBe('xn--bcher-kva.example');
  });

  it.each(['', 'a..b', 'kakao com', '-kakao.com', '1.2.3.4', `${label63}a.com`, 'a\u200D.com', 'bücher.example/x'])(
    'returns null for %j',
    (input) => {
      expect(tryParseRuleName(input)).toBeNull();
    },
  );

  it('agrees with parseRuleName on every trimmed string', () => {
    const input = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.domain());
    fc.assert(
      fc.property(input, (raw) => {
        const text = raw.trim();
        let strict: string | null;
        try {
          strict = parseRuleName(text);
        } catch (e: unknown) {
          if (!(e instanceof PortcullisError) || e.code !== 'PCL_ERR_INVALID_NAME') throw e;
          strict = null;
        }
        expect(tryParseRuleName(text)).toBe(strict);
      }),
      { numRuns: 2000 },
    );
  });

  it('only accepts names that a normalised query name can equal', () => {
    fc.assert(
      fc.property(fc.oneof(fc.domain(), fc.string({ unit: 'grapheme' })), (input) => {
        const name = tryParseRuleName(input);
        if (name === null) return;
        expect(name).toMatch(/^[a-z0-9_.-]+$/);
        expect(normalizeQueryName(name)).toBe(name);
        expect(normalizeQueryName(name.toUpperCase() + '.')).toBe(name);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parentSuffixStart', () => {
  it('walks a name from most to least specific, then returns -1', () => {
    const name = 'a.b.kakao.com';
    const suffixes: string[] = [];
    for (let at = parentSuffixStart(name, 0); at !== -1; at = parentSuffixStart(name, at)) suffixes.push(name.slice(at));
    expect(suffixes).toEqual(['b.kakao.com', 'kakao.com', 'com']);
  });

  it('returns -1 for a single label', () => {
    expect(parentSuffixStart('localhost', 0)).toBe(-1);
  });

  it('returns the index just past the next dot', () => {
    expect(parentSuffixStart('a.b.kakao.com', 0)).toBe(2);
    expect(parentSuffixStart('a.b.kakao.com', 2)).toBe(4);
  });
});

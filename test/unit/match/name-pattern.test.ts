import { describe, expect, it } from 'vitest';
import { labelFits, parseNamePattern } from '../../../src/match/name-pattern.js';
import { PortcullisError } from '../../../src/errors.js';

describe('label patterns', () => {
  it('parses prefix*suffix.parent, lower-cased', () => {
    expect(parseNamePattern('KATALK-*.kgslb.com.')).toEqual({ text: 'katalk-*.kgslb.com', parent: 'kgslb.com', prefix: 'katalk-', suffix: '' });
    expect(parseNamePattern('*-talk.example.net')).toEqual({ text: '*-talk.example.net', parent: 'example.net', prefix: '', suffix: '-talk' });
    expect(parseNamePattern('dn-*-m.cdn.example.com')).toMatchObject({ parent: 'cdn.example.com', prefix: 'dn-', suffix: '-m' });
  });

  it.each([
    ['*.kgslb.com', /write the domain rule "kgslb.com"/],
    ['katalk-*.com', /two labels/],
    ['a.katalk-*.kgslb.com', /first label only/],
    ['k*t*.kgslb.com', /one "\*"/],
    ['katalk-*.kg*lb.com', /one "\*"/],
    ['ka talk-*.kgslb.com', /character/],
    ['-*.kgslb.com', /starts or ends with "-"/],
  ])('refuses %s', (text, why) => {
    let err: unknown = null;
    try {
      parseNamePattern(text);
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(PortcullisError);
    expect((err as PortcullisError).code).toBe('PCL_ERR_INVALID_NAME');
    expect((err as Error).message).toMatch(why);
  });

  it('the * stands for one or more characters of one label', () => {
    const p = parseNamePattern('katalk-*.kgslb.com');
    expect(labelFits(p, 'katalk-fo6ld96d')).toBe(true);
    expect(labelFits(p, 'katalk-')).toBe(false);
    expect(labelFits(p, 'www-daum-uj2suuqw')).toBe(false);
    expect(labelFits(p, 'xkatalk-1')).toBe(false);
    const ends = parseNamePattern('*-talk.example.net');
    expect(labelFits(ends, 'eu-talk')).toBe(true);
    expect(labelFits(ends, '-talk')).toBe(false);
    expect(labelFits(ends, 'eu-talks')).toBe(false);
  });
});

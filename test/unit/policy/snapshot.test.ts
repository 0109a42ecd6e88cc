import { beforeAll, describe, expect, it } from 'vitest';
import { APP_IDS, loadCatalog, type AppId, type Catalog } from '../../../src/catalog/index.js';
import { parseCidr } from '../../../src/match/ip.js';
import { PolicyEngine, type AdminRule, type DecisionQuery, type ListEntries } from '../../../src/policy/index.js';

let catalog: Catalog;
beforeAll(async () => {
  catalog = await loadCatalog();
});

function engine(options: { enabled?: readonly AppId[]; extended?: readonly AppId[]; rules?: AdminRule[] } = {}): PolicyEngine {
  return new PolicyEngine({
    catalog,
    apps: { enabled: new Set(options.enabled ?? APP_IDS), extended: new Set(options.extended ?? []) },
    adminRules: options.rules ?? [],
  });
}

function rule(partial: Partial<AdminRule> & Pick<AdminRule, 'type' | 'value'>): AdminRule {
  return { id: `r-${partial.value}`, action: 'block', app: null, comment: null, ...partial };
}

function list(partial: Partial<ListEntries>): ListEntries {
  return { name: 'test', action: 'block', app: null, suffix: [], exact: [], allowSuffix: [], cidrs: [], ...partial };
}

const dns = (name: string): DecisionQuery => ({ name, layer: 'dns' });

describe('shared zones: label patterns instead of whole domains', () => {
  it('blocks KakaoTalk\'s own GSLB labels and their subdomains, nothing else of kgslb.com or kakaocdn.net', () => {
    const e = engine();
    for (const name of ['katalk-fo6ld96d.kgslb.com', 'KATALK-X1.kgslb.com', 'a.katalk-fo6ld96d.kgslb.com']) {
      expect(e.decide(dns(name)), name).toEqual({ verdict: 'block', app: 'kakaotalk', rule: 'domain:katalk-*.kgslb.com', layer: 'dns' });
    }
    for (const name of ['www-daum-uj2suuqw.kgslb.com', 'wildcard-tistory-fz0x1pwf.kgslb.com', 'p1-play.kgslb.com', 'kgslb.com', 'katalk-.kgslb.com', 'blog.kakaocdn.net', 't1.kakaocdn.net', 'k.kakaocdn.net', 'search1.kakaocdn.net']) {
      expect(e.decide(dns(name)).verdict, name).toBe('allow');
    }
    for (const name of ['p.kakaocdn.net', 'open.kakaocdn.net', 'iopen.kakaocdn.net', 'mk.kakaocdn.net']) expect(e.decide(dns(name)).verdict, name).toBe('block');
  });

  it('with the extended tier the whole shared zones are blocked again (opt-in)', () => {
    const e = engine({ extended: ['kakaotalk'] });
    expect(e.decide(dns('www-daum-uj2suuqw.kgslb.com')).rule).toBe('domain:kgslb.com');
    expect(e.decide(dns('blog.kakaocdn.net')).rule).toBe('domain:kakaocdn.net');
  });

  it('admin label patterns: a block pattern, and an allow pattern that wins over a block on the zone', () => {
    const e = engine({
      rules: [rule({ type: 'domain', value: 'cdn-*.example.org' }), rule({ type: 'domain', value: 'shared.example' }), rule({ type: 'domain', value: 'public-*.shared.example', action: 'allow' })],
    });
    expect(e.decide(dns('cdn-7.example.org')).rule).toBe('domain:cdn-*.example.org');
    expect(e.decide(dns('img.cdn-7.example.org')).verdict).toBe('block');
    expect(e.decide(dns('www.example.org')).verdict).toBe('allow');
    expect(e.decide(dns('private-1.shared.example')).rule).toBe('domain:shared.example');
    expect(e.decide(dns('public-1.shared.example'))).toMatchObject({ verdict: 'allow', rule: 'domain:public-*.shared.example' });
  });

  it('switching the app off lifts its patterns', () => {
    expect(engine({ enabled: ['line'] }).decide(dns('katalk-fo6ld96d.kgslb.com')).verdict).toBe('allow');
  });
});

describe('catalog decisions (the issue\'s acceptance list)', () => {
  it.each([
    ['talk-pilsner.kakao.com', 'kakaotalk', 'domain:kakao.com'],
    ['booking.loco.kakao.com', 'kakaotalk', 'domain:kakao.com'],
    ['legy-jp.line-apps.com', 'line', 'domain:line-apps.com'],
    ['gd2.line.naver.jp', 'line', 'domain:line.naver.jp'],
    ['obs.line-scdn.net', 'line', 'domain:line-scdn.net'],
    ['www.talkboxapp.com', 'talkbox', 'domain:talkboxapp.com'],
  ])('blocks %s for %s', (name, app, ruleText) => {
    expect(engine().decide(dns(name))).toEqual({ verdict: 'block', app, rule: ruleText, layer: 'dns' });
  });

  it.each(['notkakao.com', 'kakao.com.evil.net', 'www.naver.com', 'naver.jp', 'api.push.apple.com', 'mtalk.google.com', 'www.didiglobal.com', 'voxer.com', 'gtomato.com', 'line.com'])(
    'allows %s',
    (name) => {
      expect(engine().decide(dns(name))).toEqual({ verdict: 'allow', app: null, rule: null, layer: 'dns' });
    },
  );

  it('normalises case, trailing dots and full-width forms before matching', () => {
    const e = engine();
    for (const name of ['TALK.KAKAO.COM', 'talk.kakao.com.', 'Talk.Kakao.Com..', 'ｔａｌｋ．ｋａｋａｏ．ｃｏｍ', 'talk.kakao。com']) {
      expect(e.decide(dns(name)).verdict, name).toBe('block');
    }
  });

  it('blocks LINE addresses by CIDR, v4, v6 and IPv4-mapped v6', () => {
    const e = engine();
    expect(e.decide({ ip: '147.92.150.1', layer: 'ip' })).toEqual({ verdict: 'block', app: 'line', rule: 'cidr:147.92.128.0/17', layer: 'ip' });
    expect(e.decide({ ip: '::ffff:147.92.150.1', layer: 'ip' }).rule).toBe('cidr:147.92.128.0/17');
    expect(e.decide({ ip: '2400:dcc0:1::5', layer: 'ip' }).rule).toBe('cidr:2400:dcc0::/32');
    expect(e.decide({ ip: '147.92.127.255', layer: 'ip' }).verdict).toBe('allow');
  });

  it('a name and an address are judged apart: an allowed name to a blocked address is blocked', () => {
    const e = engine({ rules: [rule({ type: 'domain', value: 'www.example.com', action: 'allow' })] });
    expect(e.decide({ name: 'www.example.com', ip: '147.92.150.1', port: 443, layer: 'tls' })).toMatchObject({ verdict: 'block', app: 'line', layer: 'tls' });
    expect(e.decide({ name: 'www.example.com', ip: '8.8.8.8', port: 443, layer: 'tls' })).toMatchObject({ verdict: 'allow', rule: 'domain:www.example.com' });
  });
});

describe('precedence', () => {
  it('a more specific allow beats a broader block', () => {
    const e = engine({ rules: [rule({ type: 'domain', value: 'open.kakao.com', action: 'allow' })] });
    expect(e.decide(dns('x.open.kakao.com'))).toMatchObject({ verdict: 'allow', rule: 'domain:open.kakao.com' });
    expect(e.decide(dns('talk.kakao.com')).verdict).toBe('block');
  });

  it('a more specific block beats a broader allow', () => {
    const e = engine({ rules: [rule({ type: 'domain', value: 'example.com', action: 'allow' }), rule({ type: 'domain', value: 'bad.example.com' })] });
    expect(e.decide(dns('x.bad.example.com'))).toMatchObject({ verdict: 'block', rule: 'domain:bad.example.com' });
    expect(e.decide(dns('good.example.com')).verdict).toBe('allow');
  });

  it('at the same name, allow beats block, whatever the order or source', () => {
    const e = engine({ rules: [rule({ id: 'a', type: 'domain', value: 'kakao.com', action: 'allow' })] });
    expect(e.decide(dns('kakao.com'))).toMatchObject({ verdict: 'allow', rule: 'domain:kakao.com' });
    expect(e.decide(dns('talk.kakao.com')).verdict).toBe('allow');
  });

  it('allow lists beat block lists at the same level; an exact rule only covers its own name', async () => {
    const e = engine();
    await e.setLists([list({ name: 'blocks', suffix: ['ads.example'], exact: ['only.example'] }), list({ name: 'allows', action: 'allow', suffix: ['ads.example'] })]);
    expect(e.decide(dns('x.ads.example')).verdict).toBe('allow');
    expect(e.decide(dns('only.example'))).toMatchObject({ verdict: 'block', rule: 'host:only.example' });
    expect(e.decide(dns('sub.only.example')).verdict).toBe('allow');
  });

  it('the longest prefix wins; at the same prefix allow beats block', () => {
    const e = engine({
      rules: [rule({ id: 'a', type: 'cidr', value: '147.92.150.0/24', action: 'allow' }), rule({ id: 'b', type: 'cidr', value: '147.92.150.7/32' })],
    });
    expect(e.decide({ ip: '147.92.150.1', layer: 'ip' })).toMatchObject({ verdict: 'allow', rule: 'cidr:147.92.150.0/24' });
    expect(e.decide({ ip: '147.92.150.7', layer: 'ip' })).toMatchObject({ verdict: 'block', rule: 'cidr:147.92.150.7/32' });
    expect(e.decide({ ip: '147.92.151.1', layer: 'ip' })).toMatchObject({ verdict: 'block', rule: 'cidr:147.92.128.0/17' });
    const same = engine({ rules: [rule({ id: 'c', type: 'cidr', value: '147.92.128.0/17', action: 'allow' })] });
    expect(same.decide({ ip: '147.92.150.1', layer: 'ip' }).verdict).toBe('allow');
  });

  it('list CIDRs and overlay CIDRs merge by prefix length', async () => {
    const e = engine();
    await e.setLists([list({ action: 'allow', cidrs: [parseCidr('147.92.150.0/24')] })]);
    expect(e.decide({ ip: '147.92.150.1', layer: 'ip' }).verdict).toBe('allow');
    expect(e.decide({ ip: '147.92.151.1', layer: 'ip' }).verdict).toBe('block');
  });
});

describe('apps, tiers and ports', () => {
  it('a disabled app\'s rules do not exist, and re-enabling restores them without a rebuild', () => {
    const e = engine();
    const before = e.version;
    e.setAppEnabled('line', false);
    expect(e.version).toBe(before + 1);
    expect(e.decide(dns('legy-jp.line-apps.com')).verdict).toBe('allow');
    expect(e.decide({ ip: '147.92.150.1', layer: 'ip' }).verdict).toBe('allow');
    expect(e.decide(dns('talk.kakao.com')).verdict).toBe('block');
    e.setAppEnabled('line', true);
    expect(e.decide(dns('legy-jp.line-apps.com')).verdict).toBe('block');
  });

  it('extended tiers are off by default and on per app', () => {
    expect(engine().decide(dns('www.daum.net')).verdict).toBe('allow');
    expect(engine({ extended: ['kakaotalk'] }).decide(dns('www.daum.net'))).toMatchObject({ verdict: 'block', app: 'kakaotalk' });
    expect(engine({ extended: ['kakaotalk'], enabled: ['line'] }).decide(dns('www.daum.net')).verdict).toBe('allow');
  });

  it('Kakao LOCO ports block only on Kakao ranges, never on their own (APNs and FCM share them)', () => {
    const e = engine({ extended: ['kakaotalk'] });
    // 17.0.0.0/8 is Apple's: APNs on 5223 must pass; 5228 is Google FCM.
    expect(e.decide({ ip: '17.57.144.10', port: 5223, layer: 'ip' }).verdict).toBe('allow');
    expect(e.decide({ ip: '142.250.10.188', port: 5228, layer: 'ip' }).verdict).toBe('allow');
    // Port-scoped extended range (Daum portal): LOCO port blocked, HTTPS allowed.
    expect(e.decide({ ip: '203.133.161.1', port: 5223, layer: 'ip' })).toMatchObject({ verdict: 'block', app: 'kakaotalk', rule: 'cidr:203.133.160.0/19' });
    expect(e.decide({ ip: '203.133.161.1', port: 443, layer: 'ip' }).verdict).toBe('allow');
    expect(e.decide({ ip: '203.133.161.1', layer: 'ip' }).verdict).toBe('allow');
    // Voice relay: UDP ports on the KINX /21, TCP on the same number is not a Kakao port.
    expect(e.decide({ ip: '1.201.1.174', port: 23045, proto: 'udp', layer: 'ip' }).verdict).toBe('block');
    expect(e.decide({ ip: '1.201.1.174', port: 23045, proto: 'tcp', layer: 'ip' }).verdict).toBe('allow');
    // Core Kakao ranges block every port.
    expect(e.decide({ ip: '110.76.141.20', port: 443, layer: 'ip' }).verdict).toBe('block');
  });

  it('admin port rules: with an app they widen its ports; without one they apply everywhere', () => {
    const e = engine({
      extended: ['kakaotalk'],
      rules: [rule({ id: 'p1', type: 'port', value: 'tcp/443', app: 'kakaotalk' }), rule({ id: 'p2', type: 'port', value: 'udp/3478' })],
    });
    expect(e.decide({ ip: '203.133.161.1', port: 443, layer: 'ip' }).verdict).toBe('block');
    expect(e.decide({ ip: '9.9.9.9', port: 3478, proto: 'udp', layer: 'ip' })).toMatchObject({ verdict: 'block', app: null, rule: 'port:udp/3478' });
    expect(e.decide({ ip: '2001:db8::1', port: 3478, proto: 'udp', layer: 'ip' }).verdict).toBe('block');
    expect(e.decide({ ip: '9.9.9.9', port: 3479, proto: 'udp', layer: 'ip' }).verdict).toBe('allow');
    const allowPort = engine({ extended: ['kakaotalk'], rules: [rule({ id: 'p3', type: 'port', value: 'tcp/5223', app: 'kakaotalk', action: 'allow' })] });
    expect(allowPort.decide({ ip: '203.133.161.1', port: 5223, layer: 'ip' }).verdict).toBe('allow');
  });

  it('admin rules tagged with an app follow the app switch', () => {
    const e = engine({ rules: [rule({ type: 'domain', value: 'didi-messenger.example', app: 'didi' })] });
    expect(e.decide(dns('x.didi-messenger.example'))).toMatchObject({ verdict: 'block', app: 'didi' });
    e.setAppEnabled('didi', false);
    expect(e.decide(dns('x.didi-messenger.example')).verdict).toBe('allow');
  });

  it('counts rules in force per app', () => {
    const counts = engine().current.ruleCounts();
    const kakao = catalog.get('kakaotalk')!;
    expect(counts.get('kakaotalk')).toEqual({
      domains: kakao.domains.filter((d) => d.tier === 'core').length,
      cidrs: kakao.cidrs.filter((c) => c.tier === 'core').length,
      ports: kakao.ports.filter((p) => p.tier === 'core').length,
      protocols: 1,
    });
    expect(counts.get('didi')).toBeUndefined();
  });
});

describe('snapshots and swaps', () => {
  it('a snapshot in hand never changes; the engine swaps a new one with a higher version', () => {
    const e = engine();
    const old = e.current;
    e.setAdminRules([rule({ type: 'domain', value: 'newly-blocked.example' })]);
    expect(old.decide(dns('newly-blocked.example')).verdict).toBe('allow');
    expect(e.decide(dns('newly-blocked.example')).verdict).toBe('block');
    expect(e.version).toBe(old.version + 1);
  });

  it('list builds coalesce: three quick updates give at most two builds and end with the newest lists', async () => {
    const e = engine();
    const swaps: string[] = [];
    e.on('swap', (event) => swaps.push(event.reason));
    const first = e.setLists([list({ suffix: ['one.example'] })]);
    void e.setLists([list({ suffix: ['two.example'] })]);
    const last = e.setLists([list({ suffix: ['three.example'] })]);
    await Promise.all([first, last]);
    expect(swaps.length).toBeLessThanOrEqual(2);
    expect(e.decide(dns('three.example')).verdict).toBe('block');
    expect(e.decide(dns('two.example')).verdict).toBe('allow');
  });

  it('an app switch during a list build is kept when the build lands', async () => {
    const e = engine();
    const names = Array.from({ length: 50_000 }, (_, i) => `n${i}.example`);
    const building = e.setLists([list({ suffix: names })]);
    e.setAppEnabled('line', false);
    await building;
    expect(e.decide(dns('n49999.example')).verdict).toBe('block');
    expect(e.decide(dns('legy-jp.line-apps.com')).verdict).toBe('allow');
  });

  it('names with more labels than any rule can have still match their suffix (no escape by padding)', () => {
    const deep = `${Array.from({ length: 300 }, () => 'a').join('.')}.kakao.com`;
    expect(engine().decide(dns(deep))).toMatchObject({ verdict: 'block', rule: 'domain:kakao.com' });
    const e = engine({ rules: [rule({ type: 'domain', value: `${Array.from({ length: 100 }, () => 'b').join('.')}.example` })] });
    expect(e.decide(dns(`x.${Array.from({ length: 100 }, () => 'b').join('.')}.example`)).verdict).toBe('block');
  });
});

import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { APP_IDS, DEFAULT_CATALOG_DIR, loadCatalog, loadCatalogChecked } from '../../../src/catalog/index.js';
import { parseCidr, type ParsedCidr } from '../../../src/match/ip.js';

/**
 * Ranges the catalog must never touch: CDNs and shared push services. Blocking any of these
 * breaks unrelated apps for every user behind the gateway.
 */
const FORBIDDEN_RANGES = [
  ['Apple (APNs)', '17.0.0.0/8'],
  ['Google (FCM mtalk)', '142.250.0.0/15'],
  ['Google', '172.217.0.0/16'],
  ['Google', '74.125.0.0/16'],
  ['Akamai', '23.0.0.0/12'],
  ['Akamai', '104.64.0.0/10'],
  ['CloudFront', '13.32.0.0/15'],
  ['CloudFront', '54.230.0.0/16'],
  ['Fastly', '151.101.0.0/16'],
  ['Cloudflare', '104.16.0.0/13'],
  ['Cloudflare', '2606:4700::/32'],
] as const;

function overlaps(a: ParsedCidr, b: ParsedCidr): boolean {
  if (a.family !== b.family) return false;
  const prefix = Math.min(a.prefix, b.prefix);
  for (let bit = 0; bit < prefix; bit++) {
    const word = bit >>> 5;
    const mask = 1 << (31 - (bit & 31));
    if (((a.words[word]! & mask) === 0) !== ((b.words[word]! & mask) === 0)) return false;
  }
  return true;
}

describe('the shipped catalog', () => {
  it('loads with no problem and has all five apps', async () => {
    const { catalog, problems } = await loadCatalogChecked();
    expect(problems).toEqual([]);
    expect([...catalog.keys()].sort()).toEqual([...APP_IDS].sort());
  });

  it('gives every entry a source', async () => {
    for (const id of APP_IDS) {
      const raw = parse(await readFile(join(DEFAULT_CATALOG_DIR, `${id}.yaml`), 'utf8')) as Record<string, { source?: unknown }[]>;
      for (const kind of ['domains', 'cidrs', 'ports'] as const) {
        for (const entry of raw[kind] ?? []) expect(entry.source, `${id} ${kind} ${JSON.stringify(entry)}`).toBeTruthy();
      }
    }
  });

  it('lists no CDN or push-service range', async () => {
    const catalog = await loadCatalog();
    for (const app of catalog.values()) {
      for (const cidr of app.cidrs) {
        for (const [owner, range] of FORBIDDEN_RANGES) {
          expect(overlaps(cidr.cidr, parseCidr(range)), `${app.id} ${cidr.text} overlaps ${owner} ${range}`).toBe(false);
        }
        expect(cidr.cidr.prefix, `${app.id} ${cidr.text} is wider than a /16`).toBeGreaterThanOrEqual(cidr.cidr.family === 4 ? 16 : 32);
      }
    }
  });

  it('says when an app has no verified endpoints, and ships nothing invented for it', async () => {
    const catalog = await loadCatalog();
    for (const id of ['didi', 'vower'] as const) {
      const app = catalog.get(id)!;
      expect(app.coverage).toBe('none');
      expect(app.coverageNote).toMatch(/no public source/i);
      expect(app.domains.length + app.cidrs.length + app.ports.length).toBe(0);
    }
    expect(catalog.get('talkbox')!.coverage).toBe('partial');
    const didi = catalog.get('didi')!;
    expect(didi.domains.map((d) => d.name)).not.toContain('didiglobal.com');
  });

  it('never lists a bare port: every port rule rides on the app\'s CIDRs', async () => {
    const catalog = await loadCatalog();
    for (const app of catalog.values()) if (app.ports.length > 0) expect(app.cidrs.length).toBeGreaterThan(0);
    const kakaoPorts = catalog.get('kakaotalk')!.ports.map((p) => p.text);
    expect(kakaoPorts).toEqual(expect.arrayContaining(['tcp/5223', 'tcp/5228']));
  });
});

describe('catalog checks fail the build on bad entries', () => {
  let dir = '';
  afterEach(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  async function brokenCatalog(mutate: (line: Record<string, unknown>) => void): Promise<string[]> {
    dir = await mkdtemp(join(tmpdir(), 'catalog-'));
    await cp(DEFAULT_CATALOG_DIR, dir, { recursive: true });
    const file = join(dir, 'line.yaml');
    const doc = parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    mutate(doc);
    await writeFile(file, stringify(doc));
    const { problems } = await loadCatalogChecked(dir);
    return problems.map((p) => `${p.field ?? ''}: ${p.message}`);
  }

  const domains = (doc: Record<string, unknown>): Record<string, unknown>[] => doc.domains as Record<string, unknown>[];
  const cidrs = (doc: Record<string, unknown>): Record<string, unknown>[] => doc.cidrs as Record<string, unknown>[];

  it('an entry without a source', async () => {
    const problems = await brokenCatalog((doc) => {
      delete domains(doc)[0]!.source;
    });
    expect(problems.join('\n')).toMatch(/domains\[0\]/);
  });

  it('a duplicate domain', async () => {
    const problems = await brokenCatalog((doc) => {
      domains(doc).push({ ...domains(doc)[0]! });
    });
    expect(problems.join('\n')).toMatch(/duplicate domain line\.me/);
  });

  it('a domain listed by two apps', async () => {
    const problems = await brokenCatalog((doc) => {
      domains(doc).push({ value: 'kakao.com', tier: 'core', source: 'test' });
    });
    expect(problems.join('\n')).toMatch(/kakao\.com is also listed by kakaotalk/);
  });

  it('an invalid domain', async () => {
    const problems = await brokenCatalog((doc) => {
      domains(doc)[0]!.value = 'line..me';
    });
    expect(problems.join('\n')).toMatch(/domains\[0\]\.value: "line\.\.me" has an empty label/);
  });

  it('a domain not in canonical form', async () => {
    const problems = await brokenCatalog((doc) => {
      domains(doc)[0]!.value = 'LINE.me';
    });
    expect(problems.join('\n')).toMatch(/write "LINE\.me" as "line\.me"/);
  });

  it('an invalid CIDR and one with host bits set', async () => {
    const problems = await brokenCatalog((doc) => {
      cidrs(doc)[0]!.value = '147.92.300.0/17';
      cidrs(doc)[1]!.value = '203.104.128.1/20';
    });
    expect(problems.join('\n')).toMatch(/cidrs\[0\]\.value: .*not a valid CIDR/);
    expect(problems.join('\n')).toMatch(/cidrs\[1\]\.value: .*did you mean 203\.104\.128\.0\/20/);
  });

  it('a duplicate CIDR', async () => {
    const problems = await brokenCatalog((doc) => {
      cidrs(doc).push({ ...cidrs(doc)[0]! });
    });
    expect(problems.join('\n')).toMatch(/duplicate CIDR 147\.92\.128\.0\/17/);
  });

  it('a bare port rule (withAppCidrs missing)', async () => {
    const problems = await brokenCatalog((doc) => {
      doc.ports = [{ value: 'tcp/443', tier: 'core', source: 'test' }];
    });
    expect(problems.join('\n')).toMatch(/ports\[0\]/);
  });

  it('an unknown key', async () => {
    const problems = await brokenCatalog((doc) => {
      doc.colour = 'green';
    });
    expect(problems.join('\n')).toMatch(/colour: unknown key/);
  });
});

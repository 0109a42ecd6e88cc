import { describe, expect, it } from 'vitest';
import { admitBundle, keyFingerprint, openBundle } from '../../../src/catalog/bundle.js';
import { loadBundledRelease, type CatalogRelease } from '../../../src/catalog/index.js';
import { PolicyEngine } from '../../../src/policy/index.js';
import { ed25519Keys, signedBundle, withDomain } from '../../support/catalog-bundles.js';

const publisher = ed25519Keys();
const attacker = ed25519Keys();
const bundled = await loadBundledRelease();
const FIX = 'chat-v2.catalog-fix.example';

function opened(text: string): CatalogRelease {
  const result = openBundle(text, publisher.publicKey, 'test bundle');
  if (!result.ok) throw new Error(`${result.reason}: ${result.message}`);
  return result.release;
}

function refusal(text: string): string {
  const result = openBundle(text, publisher.publicKey, 'test bundle');
  return result.ok ? 'accepted' : result.reason;
}

describe('signed catalog bundles', () => {
  it('carry the whole catalog: a verified bundle decides like the catalog it was built from, plus its fix', () => {
    const release = opened(signedBundle(withDomain(bundled.documents, 'line', FIX), { version: bundled.version + 1, key: publisher.privateKey }));
    expect(release.origin).toBe('signed');
    expect(release.version).toBe(bundled.version + 1);
    const apps = { enabled: new Set(bundled.catalog.keys()), extended: new Set<never>() };
    const before = new PolicyEngine({ catalog: bundled.catalog, categories: bundled.categories, apps });
    const after = new PolicyEngine({ catalog: release.catalog, categories: release.categories, apps });
    for (const name of ['legy-jp.line-apps.com', 'katalk.kakao.com', 'www.daum.net', 'example.org']) {
      expect(after.decide({ name, layer: 'dns' }).verdict).toBe(before.decide({ name, layer: 'dns' }).verdict);
    }
    expect(before.decide({ name: FIX, layer: 'dns' }).verdict).toBe('allow');
    expect(after.decide({ name: FIX, layer: 'dns' })).toMatchObject({ verdict: 'block', app: 'line' });
    expect(after.dohResolvers.match('dns.google')).toBe('dns.google');
  });

  it('refuse a bundle signed with another key, and name both keys', () => {
    const text = signedBundle(bundled.documents, { version: bundled.version + 1, key: attacker.privateKey });
    const result = openBundle(text, publisher.publicKey, 'test bundle');
    expect(result).toMatchObject({ ok: false, reason: 'bad-signature' });
    expect(!result.ok && result.message).toContain(keyFingerprint(attacker.publicKey));
    expect(!result.ok && result.message).toContain(keyFingerprint(publisher.publicKey));
  });

  it('refuse a payload changed after signing (one byte anywhere, and a swapped-in payload)', () => {
    const text = signedBundle(bundled.documents, { version: bundled.version + 1, key: publisher.privateKey });
    const envelope = JSON.parse(text) as { payload: string };
    const payload = Buffer.from(envelope.payload, 'base64');
    for (const at of [0, Math.floor(payload.length / 3), payload.length - 2]) {
      const changed = Buffer.from(payload);
      changed[at] = changed[at]! ^ 0x01;
      expect(refusal(JSON.stringify({ ...envelope, payload: changed.toString('base64') }))).toBe('bad-signature');
    }
    const other = JSON.parse(signedBundle(withDomain(bundled.documents, 'line', FIX), { version: bundled.version + 9, key: attacker.privateKey })) as { payload: string };
    expect(refusal(JSON.stringify({ ...envelope, payload: other.payload }))).toBe('bad-signature');
  });

  it('refuse every truncation of a bundle without throwing', () => {
    const text = signedBundle(bundled.documents, { version: bundled.version + 1, key: publisher.privateKey });
    const cuts = new Set<string>();
    for (let length = 0; length < text.length - 1; length += Math.max(1, Math.floor(text.length / 997))) {
      cuts.add(refusal(text.slice(0, length)));
    }
    expect([...cuts].sort()).toEqual(['malformed']);
  });

  it('refuse a signed bundle whose catalog breaks the catalog rules: an entry without a source, a missing app, a bad value', () => {
    const noSource = signedBundle(withDomain(bundled.documents, 'line', FIX, null), { version: bundled.version + 1, key: publisher.privateKey });
    const result = openBundle(noSource, publisher.publicKey, 'test bundle');
    expect(result).toMatchObject({ ok: false, reason: 'invalid' });
    expect(!result.ok && result.message).toMatch(/apps\.line\.domains\[\d+\]/);
    const fourApps = Object.fromEntries(Object.entries(bundled.documents.apps).filter(([id]) => id !== 'didi'));
    expect(refusal(signedBundle({ ...bundled.documents, apps: fourApps }, { version: bundled.version + 1, key: publisher.privateKey }))).toBe('invalid');
    expect(refusal(signedBundle(withDomain(bundled.documents, 'line', 'not a name!'), { version: bundled.version + 1, key: publisher.privateKey }))).toBe('invalid');
    // A domain two apps claim would make the verdict's app ambiguous.
    expect(refusal(signedBundle(withDomain(bundled.documents, 'didi', 'line-apps.com'), { version: bundled.version + 1, key: publisher.privateKey }))).toBe('invalid');
  });

  it('admit only what is newer than the catalog in force and not expired; the same bytes again are unchanged', () => {
    const now = Date.now();
    const text = signedBundle(bundled.documents, { version: 10, key: publisher.privateKey });
    const result = openBundle(text, publisher.publicKey, 'b');
    if (!result.ok) throw new Error(result.message);
    expect(admitBundle(result.release, result.digest, { version: 9, digest: null }, now)).toEqual({ admit: true });
    expect(admitBundle(result.release, result.digest, { version: 10, digest: result.digest }, now)).toMatchObject({ admit: false, reason: 'unchanged' });
    // The same version with other contents is a replay or a publisher's mistake: never swapped in.
    expect(admitBundle(result.release, result.digest, { version: 10, digest: 'other' }, now)).toMatchObject({ admit: false, reason: 'stale' });
    expect(admitBundle(result.release, result.digest, { version: 11, digest: 'other' }, now)).toMatchObject({ admit: false, reason: 'stale' });
    const expired = openBundle(signedBundle(bundled.documents, { version: 12, key: publisher.privateKey, issuedMs: now - 2 * 86_400_000, expiresMs: now - 1_000 }), publisher.publicKey, 'b');
    if (!expired.ok) throw new Error(expired.message);
    expect(admitBundle(expired.release, expired.digest, { version: 9, digest: null }, now)).toMatchObject({ admit: false, reason: 'expired' });
  });
});

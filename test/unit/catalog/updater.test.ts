import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundledRelease, type CatalogRelease } from '../../../src/catalog/index.js';
import { CatalogUpdater } from '../../../src/catalog/updater.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { ed25519Keys, signedBundle, withDomain } from '../../support/catalog-bundles.js';

/** What a restart finds under store.path decides the catalog in force: only a kept bundle that verifies and is newer than the bundled one. */
const publisher = ed25519Keys();
const other = ed25519Keys();
let dir = '';
let bundled: CatalogRelease;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-updater-'));
  bundled = await loadBundledRelease();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function restartWith(kept: string | null, options: { configured?: boolean } = {}): Promise<CatalogUpdater> {
  const home = await mkdtemp(join(dir, 'store-'));
  if (kept !== null) await writeFile(join(home, 'catalog-bundle.json'), kept);
  const updater = new CatalogUpdater({
    bundled,
    updates: options.configured === false ? null : { config: { url: 'https://127.0.0.1:1/never', publicKey: publisher.publicPem, refreshMs: 60_000, ca: null }, publicKey: publisher.publicKey, ca: null },
    dir: home,
    logger: silentLogger,
  });
  await updater.loadStored();
  return updater;
}

const kept = (bundle: string): string => JSON.stringify({ bundle, via: 'download', receivedAt: '2026-12-06T00:00:00.000Z', etag: '"e1"' });

describe('the catalog in force after a restart', () => {
  it('is the kept bundle when it verifies and is newer than the bundled catalog', async () => {
    const updater = await restartWith(kept(signedBundle(withDomain(bundled.documents, 'line', 'kept.example'), { version: bundled.version + 1, key: publisher.privateKey })));
    expect(updater.status()).toMatchObject({ version: bundled.version + 1, origin: 'signed', receivedVia: 'download', receivedAt: '2026-12-06T00:00:00.000Z' });
    expect(updater.release.catalog.get('line')!.domains.some((d) => d.name === 'kept.example')).toBe(true);
  });

  it.each([
    ['older than the bundled catalog (an upgrade shipped a newer one)', () => kept(signedBundle(bundled.documents, { version: bundled.version - 1, key: publisher.privateKey }))],
    ['signed with a key that is no longer configured', () => kept(signedBundle(bundled.documents, { version: bundled.version + 1, key: other.privateKey }))],
    ['not JSON (a disk error)', () => '{"bundle": "eyJ'],
    ['without a bundle in it', () => JSON.stringify({ via: 'download' })],
  ])('is the bundled catalog when the kept bundle is %s', async (_what, make) => {
    const updater = await restartWith(make());
    expect(updater.status()).toMatchObject({ version: bundled.version, origin: 'bundled', receivedVia: null });
    expect(updater.release).toBe(bundled);
  });

  it('is the bundled catalog without policy.catalog, whatever is kept', async () => {
    const updater = await restartWith(kept(signedBundle(bundled.documents, { version: bundled.version + 5, key: publisher.privateKey })), { configured: false });
    expect(updater.status()).toMatchObject({ version: bundled.version, origin: 'bundled', updates: null });
  });

  it('keeps a kept bundle that has expired since, and says so', async () => {
    const now = Date.now();
    const updater = await restartWith(kept(signedBundle(bundled.documents, { version: bundled.version + 2, key: publisher.privateKey, issuedMs: now - 40 * 86_400_000, expiresMs: now - 86_400_000 })));
    expect(updater.status()).toMatchObject({ version: bundled.version + 2, origin: 'signed', isExpired: true });
  });
});

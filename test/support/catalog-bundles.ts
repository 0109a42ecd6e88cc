import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { buildPayload, signPayload } from '../../src/catalog/bundle.js';
import type { CatalogDocuments } from '../../src/catalog/index.js';

/** An Ed25519 key pair as a publisher of catalog bundles would make it. */
export function ed25519Keys(): { privateKey: KeyObject; publicKey: KeyObject; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

export function isoAt(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The documents with one more core domain for `app` (with its source, or none when null), as a catalog fix would add. */
export function withDomain(documents: CatalogDocuments, app: string, value: string, source: string | null = 'test fixture: a catalog update'): CatalogDocuments {
  const doc = structuredClone(documents.apps[app]) as { domains: Record<string, unknown>[] };
  doc.domains.push(source === null ? { value, tier: 'core' } : { value, tier: 'core', source });
  return { ...documents, apps: { ...documents.apps, [app]: doc } };
}

/**
 * A signed bundle of `documents`. The payload is built without the build command's checks
 * (tests need bundles a publisher should never sign, such as an entry without a source).
 */
export function signedBundle(documents: CatalogDocuments, options: { version: number; key: KeyObject; issuedMs?: number; expiresMs?: number }): string {
  const now = Date.now();
  const { text } = buildPayload(documents, { version: options.version, issued: isoAt(options.issuedMs ?? now - 60_000), expires: isoAt(options.expiresMs ?? now + 30 * 86_400_000) });
  return signPayload(text, options.key);
}

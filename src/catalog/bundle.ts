import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { formatLocation } from '../errors.js';
import type { Problem } from '../config/yaml-source.js';
import { CatalogVersion, Rfc3339, compileRelease, type CatalogDocuments, type CatalogRelease, type ReleaseMeta } from './release.js';

/**
 * A signed catalog bundle: the whole catalog (every app and category, every entry with its
 * source) as one JSON payload with a monotonic version, issue and expiry times, signed with
 * Ed25519. The signature covers the payload's exact bytes (carried base64 in an envelope), so
 * there is no canonical form to get wrong: what was signed is what is parsed.
 */
export const PAYLOAD_FORMAT = 'portcullis-catalog/1';
export const ENVELOPE_FORMAT = 'portcullis-signed-catalog/1';

const PayloadSchema = Type.Object(
  {
    format: Type.Literal(PAYLOAD_FORMAT),
    version: CatalogVersion,
    issued: Rfc3339,
    expires: Rfc3339,
    apps: Type.Record(Type.String(), Type.Unknown()),
    categories: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

const EnvelopeSchema = Type.Object(
  {
    format: Type.Literal(ENVELOPE_FORMAT),
    /** Fingerprint of the signing key: tells an operator which key signed, never trusted. */
    key: Type.String({ maxLength: 128 }),
    payload: Type.String({ minLength: 1 }),
    signature: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

export type CatalogPayload = Static<typeof PayloadSchema>;

/** Why a bundle is not put in force; each is a value of portcullis_catalog_updates_total{result}. */
export type BundleRefusal = 'malformed' | 'bad-signature' | 'invalid' | 'expired' | 'stale';

export type OpenedBundle =
  | { ok: true; release: CatalogRelease; digest: string }
  | { ok: false; reason: BundleRefusal; message: string };

/** `sha256:` and the first 16 hex digits of the SubjectPublicKeyInfo's hash. */
export function keyFingerprint(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return `sha256:${createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)}`;
}

/** An Ed25519 public key from PEM text; throws with the reason otherwise. */
export function parsePublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an Ed25519 public key is needed, this is ${key.asymmetricKeyType ?? 'not an asymmetric key'}`);
  return key;
}

/** An Ed25519 private key from PEM text; throws with the reason otherwise. */
export function parsePrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an Ed25519 private key is needed, this is ${key.asymmetricKeyType ?? 'not an asymmetric key'}`);
  return key;
}

/** The payload of a bundle for `documents`: checked to compile first, so a bundle never carries a catalog the gateway would refuse. */
export function buildPayload(documents: CatalogDocuments, meta: { version: number; issued: string; expires: string }): { text: string; problems: Problem[] } {
  const payload: CatalogPayload = { format: PAYLOAD_FORMAT, version: meta.version, issued: meta.issued, expires: meta.expires, apps: documents.apps, categories: documents.categories };
  const { problems } = checkPayload(payload, 'bundle');
  return { text: `${JSON.stringify(payload, null, 1)}\n`, problems };
}

/** The envelope: the payload's bytes and their signature. */
export function signPayload(payloadText: string, privateKey: KeyObject): string {
  const bytes = Buffer.from(payloadText, 'utf8');
  const envelope: Static<typeof EnvelopeSchema> = {
    format: ENVELOPE_FORMAT,
    key: keyFingerprint(privateKey),
    payload: bytes.toString('base64'),
    signature: sign(null, bytes, privateKey).toString('base64'),
  };
  return `${JSON.stringify(envelope)}\n`;
}

function strictBase64(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

/** The payload's schema, then the catalog it carries, compiled. */
function checkPayload(payload: unknown, label: string): { release: CatalogRelease | null; problems: Problem[] } {
  const problems: Problem[] = [];
  if (!Value.Check(PayloadSchema, payload)) {
    for (const error of Value.Errors(PayloadSchema, payload)) {
      problems.push({ file: label, field: error.path.slice(1).replaceAll('/', '.'), message: error.message });
      if (problems.length >= 10) break;
    }
    return { release: null, problems };
  }
  if (Date.parse(payload.expires) <= Date.parse(payload.issued)) problems.push({ file: label, field: 'expires', message: 'expires must be after issued' });
  const meta: ReleaseMeta = { version: payload.version, issued: payload.issued, expires: payload.expires };
  const release = compileRelease({ apps: payload.apps, categories: payload.categories }, meta, 'signed', label, problems);
  return { release: problems.length === 0 ? release : null, problems };
}

/**
 * Checks a downloaded (or stored, or shared) bundle in the order that trusts nothing unverified:
 * the envelope's shape, the signature over the payload's bytes, then the payload's schema and
 * the catalog it carries. Whether its version and expiry admit it is `admitBundle`'s question.
 */
export function openBundle(text: string, publicKey: KeyObject, label: string): OpenedBundle {
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch (e: unknown) {
    return { ok: false, reason: 'malformed', message: `not a signed catalog bundle (${e instanceof Error ? e.message : String(e)})` };
  }
  if (!Value.Check(EnvelopeSchema, envelope)) return { ok: false, reason: 'malformed', message: `not a signed catalog bundle (expected {format: "${ENVELOPE_FORMAT}", key, payload, signature})` };
  const payloadBytes = strictBase64(envelope.payload);
  const signature = strictBase64(envelope.signature);
  if (payloadBytes === null || signature === null) return { ok: false, reason: 'malformed', message: 'payload and signature must be base64' };
  if (!verify(null, payloadBytes, publicKey, signature)) {
    const expected = keyFingerprint(publicKey);
    const by = envelope.key === expected ? 'the payload does not match its signature' : `signed by key ${envelope.key}, not the configured ${expected}`;
    return { ok: false, reason: 'bad-signature', message: `signature check failed: ${by}` };
  }
  let payload: unknown;
  try {
    payload = JSON.parse(payloadBytes.toString('utf8'));
  } catch (e: unknown) {
    return { ok: false, reason: 'invalid', message: `the signed payload is not JSON (${e instanceof Error ? e.message : String(e)})` };
  }
  const { release, problems } = checkPayload(payload, label);
  if (release === null) return { ok: false, reason: 'invalid', message: problems.map((p) => `${formatLocation(p)}: ${p.message}`).join('; ') };
  return { ok: true, release, digest: createHash('sha256').update(payloadBytes).digest('hex') };
}

export type Admission = { admit: true } | { admit: false; reason: 'unchanged' | 'expired' | 'stale'; message: string };

/**
 * Whether a verified bundle may replace the catalog in force: not expired (a frozen mirror
 * cannot hold gateways on an old catalog forever), and newer than what is in force (no rollback
 * to an older signed bundle, no replay). The same bytes again are simply unchanged.
 */
export function admitBundle(release: ReleaseMeta, digest: string, inForce: { version: number; digest: string | null }, nowMs: number): Admission {
  if (release.version === inForce.version && digest === inForce.digest) return { admit: false, reason: 'unchanged', message: `version ${release.version} is already in force` };
  if (release.expires !== null && Date.parse(release.expires) <= nowMs) return { admit: false, reason: 'expired', message: `version ${release.version} expired at ${release.expires}` };
  if (release.version <= inForce.version) return { admit: false, reason: 'stale', message: `version ${release.version} is not newer than version ${inForce.version} in force` };
  return { admit: true };
}

import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { formatLocation, errorMessage } from '../errors.js';
import { parseDurationMs } from '../config/index.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { admitBundle, buildPayload, keyFingerprint, openBundle, parsePrivateKey, parsePublicKey, signPayload } from './bundle.js';
import { DEFAULT_CATALOG_DIR } from './load.js';
import { loadBundledReleaseChecked } from './release.js';
import type { CatalogStatus } from './updater.js';

/** `portcullis catalog build|sign|verify`: make, sign and check a signed catalog bundle. */
export interface CatalogCommandOptions {
  /** build: the catalog directory (blocklists/ layout); default the bundled one. */
  dir?: string;
  /** build: overrides catalog.yaml's version. */
  bundleVersion?: string;
  /** build: a duration from now (30d) or an RFC 3339 time; default 30d. */
  expires?: string;
  /** sign: the Ed25519 private key (PEM file); verify: the public key (PEM file). */
  key?: string;
  out?: string;
  /** verify: the configured public key when --key is not given. */
  configuredKey?: () => Promise<string | null>;
}

const EXIT_OK = 0;
const EXIT_ERROR = 1;
const DEFAULT_EXPIRY_MS = 30 * 86_400_000;

export const CATALOG_USAGE = `usage:
  portcullis catalog build [--dir DIR] [--bundle-version N] [--expires 30d|TIME] [--out FILE]
  portcullis catalog sign PAYLOAD --key PRIVATE.pem [--out FILE]
  portcullis catalog verify BUNDLE [--key PUBLIC.pem | --config FILE]
`;

export async function catalogCommand(verb: string | undefined, positionals: readonly string[], options: CatalogCommandOptions): Promise<number> {
  try {
    switch (verb) {
      case 'build':
        return positionals.length === 0 ? await build(options) : usage();
      case 'sign':
        return positionals.length === 1 ? await signFile(positionals[0]!, options) : usage();
      case 'verify':
        return positionals.length === 1 ? await verifyFile(positionals[0]!, options) : usage();
      default:
        return usage();
    }
  } catch (e: unknown) {
    process.stderr.write(`${errorMessage(e)}\n`);
    return EXIT_ERROR;
  }
}

function usage(): number {
  process.stderr.write(CATALOG_USAGE);
  return EXIT_ERROR;
}

async function output(text: string, out: string | undefined): Promise<void> {
  if (out === undefined || out === '-') process.stdout.write(text);
  else await writeFileAtomic(out, text);
}

function expiryOf(text: string | undefined, nowMs: number): string {
  if (text === undefined) return new Date(nowMs + DEFAULT_EXPIRY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (/^[0-9]+(ms|s|m|h|d)$/.test(text)) return new Date(nowMs + parseDurationMs(text)).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (Number.isNaN(Date.parse(text))) throw new Error(`--expires: "${text}" is neither a duration (30d) nor a time (2027-01-31T00:00:00Z)`);
  return text;
}

/** The catalog directory as an unsigned payload: checked first, so only a catalog the gateway takes is ever signed. */
async function build(options: CatalogCommandOptions): Promise<number> {
  const { release, problems } = await loadBundledReleaseChecked(options.dir ?? DEFAULT_CATALOG_DIR);
  if (release === null) {
    for (const p of problems) process.stderr.write(`${formatLocation(p)}: ${p.message}\n`);
    return EXIT_ERROR;
  }
  const version = options.bundleVersion === undefined ? release.version : Number(options.bundleVersion);
  if (!Number.isSafeInteger(version) || version < 1) throw new Error(`--bundle-version: "${options.bundleVersion ?? ''}" is not a positive integer`);
  const now = Date.now();
  const issued = new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const payload = buildPayload(release.documents, { version, issued, expires: expiryOf(options.expires, now) });
  if (payload.problems.length > 0) {
    for (const p of payload.problems) process.stderr.write(`${formatLocation(p)}: ${p.message}\n`);
    return EXIT_ERROR;
  }
  await output(payload.text, options.out);
  if (options.out !== undefined && options.out !== '-') process.stderr.write(`built catalog version ${version}, expires ${expiryOf(options.expires, now)}: ${options.out}\n`);
  return EXIT_OK;
}

async function signFile(payloadPath: string, options: CatalogCommandOptions): Promise<number> {
  if (options.key === undefined) throw new Error('sign needs --key PRIVATE.pem (an Ed25519 private key, e.g. from openssl genpkey -algorithm ed25519)');
  const key = parsePrivateKey(await readFile(options.key, 'utf8'));
  const payload = await readFile(payloadPath, 'utf8');
  const envelope = signPayload(payload, key);
  // Checked as a gateway would: a payload that is not a catalog is never signed.
  const opened = openBundle(envelope, createPublicKey(key), payloadPath);
  if (!opened.ok) throw new Error(`not signed: ${opened.message}`);
  await output(envelope, options.out);
  if (options.out !== undefined && options.out !== '-') process.stderr.write(`signed catalog version ${opened.release.version} with ${keyFingerprint(key)}: ${options.out}\n`);
  return EXIT_OK;
}

async function verifyFile(bundlePath: string, options: CatalogCommandOptions): Promise<number> {
  const pem = options.key !== undefined ? await readFile(options.key, 'utf8') : await options.configuredKey?.();
  if (pem === undefined || pem === null) throw new Error('verify needs --key PUBLIC.pem, or a configuration with policy.catalog.publicKey');
  const publicKey = parsePublicKey(pem);
  const opened = openBundle(await readFile(bundlePath, 'utf8'), publicKey, bundlePath);
  if (!opened.ok) {
    process.stderr.write(`refused (${opened.reason}): ${opened.message}\n`);
    return EXIT_ERROR;
  }
  const { release } = opened;
  const admission = admitBundle(release, opened.digest, { version: 0, digest: null }, Date.now());
  if (!admission.admit) {
    process.stderr.write(`refused (${admission.reason}): ${admission.message}\n`);
    return EXIT_ERROR;
  }
  const entries = [...release.catalog.values()].reduce((n, app) => n + app.domains.length + app.cidrs.length + app.ports.length + app.protocols.length, 0);
  process.stdout.write(`valid: catalog version ${release.version}, issued ${release.issued}, expires ${release.expires ?? 'never'}, ${release.catalog.size} apps with ${entries} entries, signed by ${keyFingerprint(publicKey)}\n`);
  return EXIT_OK;
}

/** One line saying which catalog is in force and where it came from (`portcullis apps`, the console). */
export function describeCatalog(status: CatalogStatus): string {
  if (status.origin === 'bundled') return `catalog version ${status.version}, bundled with this build`;
  const via = status.receivedVia === 'fleet' ? 'shared by the fleet' : 'downloaded';
  const from = status.updates === null ? '' : ` from ${status.updates.url}`;
  return `catalog version ${status.version}, signed bundle${from} (${via} ${status.receivedAt ?? ''}), expires ${status.expires ?? 'never'}${status.isExpired ? ' (EXPIRED: no newer bundle has loaded)' : ''}`;
}

import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { createSecureContext, rootCertificates } from 'node:tls';
import { Agent } from 'undici';
import type { CatalogUpdateConfig } from '../config/index.js';
import { DEFAULTS } from '../config/defaults.js';
import { PortcullisError, errorMessage } from '../errors.js';
import { fetchList } from '../lists/fetch.js';
import type { Logger } from '../observability/logger.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { admitBundle, openBundle, parsePublicKey } from './bundle.js';
import type { CatalogRelease } from './release.js';

/** Every outcome of one look at a bundle: the values of portcullis_catalog_updates_total{result}. */
export const UPDATE_RESULTS = ['applied', 'unchanged', 'fetch-failed', 'malformed', 'bad-signature', 'invalid', 'expired', 'stale'] as const;
export type UpdateResult = (typeof UPDATE_RESULTS)[number];

/**
 * How the gateways of a fleet (Redis store) hand each other verified bundles, so that all of
 * them converge on the highest version any of them accepted, even one cut off from the URL.
 */
export interface CatalogShare {
  /** Keeps `bundle` for the fleet unless a version as high is there already. */
  offer(bundle: string, version: number): Promise<void>;
  /** The fleet's bundle, or null. */
  latest(): Promise<string | null>;
  /** Called with the fleet's bundle whenever it may have changed (a publish, a reconnect). */
  onBundle(listener: (bundle: string) => void): void;
}

export interface CatalogStatus {
  version: number;
  origin: CatalogRelease['origin'];
  issued: string;
  expires: string | null;
  /** A signed bundle past its expiry stays in force until a newer one loads (nothing better is at hand). */
  isExpired: boolean;
  /** The version shipped with this build (blocklists/catalog.yaml). */
  bundledVersion: number;
  /** For a signed bundle: how it reached this gateway, and when. */
  receivedVia: 'download' | 'fleet' | null;
  receivedAt: string | null;
  /** Null when policy.catalog is not configured. */
  updates: {
    url: string;
    refreshSeconds: number;
    lastCheck: string | null;
    lastResult: UpdateResult | null;
    /** Why the last look did not apply a bundle (a refusal or a failed download); null after a success. */
    lastError: string | null;
    nextCheck: string | null;
  } | null;
}

/** What is kept under store.path: the accepted bundle as received, and how it came. */
interface StoredBundle {
  bundle: string;
  via: 'download' | 'fleet';
  receivedAt: string;
  etag: string | null;
}

export interface CatalogUpdaterOptions {
  bundled: CatalogRelease;
  /** policy.catalog, with its public key parsed; null when not configured. */
  updates: { config: CatalogUpdateConfig; publicKey: KeyObject; ca: string | null } | null;
  /** store.path: the accepted bundle is kept here across restarts. */
  dir: string;
  logger: Logger;
  share?: CatalogShare | null;
  onResult?: (result: UpdateResult) => void;
}

const STORED_FILE = 'catalog-bundle.json';

/**
 * policy.catalog made ready to use: the public key read and parsed, the CA file read. Throws
 * PCL_ERR_CONFIG_INVALID naming the field (`validate` and `start` call this alike).
 */
export async function readCatalogUpdates(config: CatalogUpdateConfig): Promise<NonNullable<CatalogUpdaterOptions['updates']>> {
  const fail = (field: string, message: string): PortcullisError => new PortcullisError('PCL_ERR_CONFIG_INVALID', message, { details: { field: `policy.catalog.${field}` } });
  const isInline = config.publicKey.includes('-----BEGIN');
  const pem = isInline
    ? config.publicKey
    : await readFile(config.publicKey, 'utf8').catch((e: unknown) => {
        throw fail('publicKey', `cannot read ${config.publicKey}: ${errorMessage(e)}`);
      });
  let publicKey: KeyObject;
  try {
    publicKey = parsePublicKey(pem);
  } catch (e: unknown) {
    throw fail('publicKey', `${isInline ? 'the key' : config.publicKey} is not usable: ${errorMessage(e)}`);
  }
  // Whether it holds usable certificates is preflight's check, as for dns.upstreamCa.
  const path = config.ca;
  const ca =
    path === null
      ? null
      : await readFile(path, 'utf8').catch((e: unknown) => {
          throw fail('ca', `cannot read ${path}: ${errorMessage(e)}`);
        });
  return { config, publicKey, ca };
}

/**
 * Keeps the catalog in force: the bundled one until a verified, newer signed bundle loads, then
 * that bundle (kept under store.path, so a restart with the source down keeps it). Downloads the
 * bundle from policy.catalog.url on its interval (ETag, size cap, deadline), takes bundles the
 * fleet shares, and refuses anything unsigned, invalid, expired or not newer, keeping the last
 * good catalog and saying why (log, status, metric). One look at a time.
 */
export class CatalogUpdater extends EventEmitter<{ release: [CatalogRelease] }> {
  private current: CatalogRelease;
  private currentDigest: string | null = null;
  private receivedVia: StoredBundle['via'] | null = null;
  private receivedAt: string | null = null;
  private etag: string | null = null;
  private lastCheck: string | null = null;
  private lastResult: UpdateResult | null = null;
  private lastError: string | null = null;
  private nextCheckAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private isStopped = false;
  private readonly dispatcher: Agent | null;
  private readonly log: Logger;
  private readonly storedPath: string;

  constructor(private readonly options: CatalogUpdaterOptions) {
    super();
    this.current = options.bundled;
    this.log = options.logger.child({ component: 'catalog' });
    this.storedPath = join(options.dir, STORED_FILE);
    // `ca` replaces the trust store: the built-in roots are kept beside the private CA. One
    // context for every download: a `ca` option per connection would parse every root again.
    this.dispatcher = options.updates?.ca == null ? null : new Agent({ connect: { secureContext: createSecureContext({ ca: [...rootCertificates, options.updates.ca] }) } });
  }

  get release(): CatalogRelease {
    return this.current;
  }

  /**
   * At start: the bundle kept under store.path, checked again (signature against the configured
   * key, schema), in force when it is newer than the bundled catalog. Without policy.catalog the
   * bundled catalog is in force, whatever is stored.
   */
  async loadStored(): Promise<void> {
    if (this.options.updates === null) return;
    const text = await readFile(this.storedPath, 'utf8').catch(() => null);
    if (text === null) return;
    let stored: StoredBundle;
    try {
      stored = JSON.parse(text) as StoredBundle;
      if (typeof stored.bundle !== 'string') throw new Error('no bundle in it');
    } catch (e: unknown) {
      this.log.warn({ file: this.storedPath, err: errorMessage(e) }, 'the kept catalog bundle is unreadable: the bundled catalog is in force');
      return;
    }
    const opened = openBundle(stored.bundle, this.options.updates.publicKey, this.storedPath);
    if (!opened.ok) {
      this.log.warn({ file: this.storedPath, result: opened.reason, err: opened.message }, 'the kept catalog bundle is refused: the bundled catalog is in force');
      return;
    }
    if (opened.release.version <= this.current.version) {
      this.log.info({ kept: opened.release.version, bundled: this.current.version }, 'the bundled catalog is newer than the kept bundle');
      return;
    }
    this.adopt(opened.release, opened.digest, stored.via, stored.receivedAt, stored.etag);
    this.log.info({ version: opened.release.version, expires: opened.release.expires, receivedVia: stored.via }, 'catalog bundle kept from before the restart is in force');
  }

  /** Checks now, then on policy.catalog.refresh; takes the fleet's bundles as they come. */
  start(): void {
    const { updates, share } = this.options;
    if (updates === null) return;
    share?.onBundle((bundle) => {
      void this.serialised(() => this.consider(bundle, 'fleet', null));
    });
    void share
      ?.latest()
      .then((bundle) => (bundle === null ? undefined : this.serialised(() => this.consider(bundle, 'fleet', null))))
      .catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, 'cannot read the fleet catalog bundle'));
    this.schedule(0);
  }

  /** Downloads and considers the bundle now (POST /v1/catalog/refresh, and the timer). */
  refresh(): Promise<UpdateResult> {
    return this.serialised(() => this.download());
  }

  status(): CatalogStatus {
    const { updates, bundled } = this.options;
    const release = this.current;
    return {
      version: release.version,
      origin: release.origin,
      issued: release.issued,
      expires: release.expires,
      isExpired: release.expires !== null && Date.parse(release.expires) <= Date.now(),
      bundledVersion: bundled.version,
      receivedVia: release.origin === 'signed' ? this.receivedVia : null,
      receivedAt: release.origin === 'signed' ? this.receivedAt : null,
      updates:
        updates === null
          ? null
          : {
              url: updates.config.url,
              refreshSeconds: updates.config.refreshMs / 1000,
              lastCheck: this.lastCheck,
              lastResult: this.lastResult,
              lastError: this.lastError,
              nextCheck: this.nextCheckAt === null ? null : new Date(this.nextCheckAt).toISOString(),
            },
    };
  }

  async stop(): Promise<void> {
    this.isStopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.nextCheckAt = null;
    await this.queue;
    await this.dispatcher?.close();
  }

  private serialised<T>(run: () => Promise<T>): Promise<T> {
    const next = this.queue.then(run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private schedule(delayMs: number): void {
    if (this.isStopped) return;
    // Gateways of a fleet started together do not all ask the source at the same moment.
    const jittered = delayMs === 0 ? 0 : Math.round(delayMs * (0.9 + Math.random() * 0.2));
    this.nextCheckAt = Date.now() + jittered;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh().then((result) => {
        const refreshMs = this.options.updates!.config.refreshMs;
        this.schedule(result === 'fetch-failed' ? Math.min(refreshMs, DEFAULTS.catalogRetryMaxMs) : refreshMs);
      });
    }, jittered);
    this.timer.unref();
  }

  private async download(): Promise<UpdateResult> {
    const updates = this.options.updates!;
    const { url } = updates.config;
    let fetched;
    try {
      fetched = await fetchList(url, {
        maxBytes: DEFAULTS.catalogFetchMaxBytes,
        timeoutMs: DEFAULTS.catalogFetchTimeoutMs,
        etag: this.etag,
        accept: 'application/json',
        ...(this.dispatcher === null ? {} : { dispatcher: this.dispatcher }),
      });
    } catch (e: unknown) {
      return this.record('fetch-failed', `cannot download ${url}: ${errorMessage(e)}`);
    }
    if (fetched.text === null) return this.record('unchanged', null);
    return this.consider(fetched.text, 'download', fetched.etag);
  }

  /** Verifies a bundle, admits it or says why not, and puts it in force. */
  private async consider(text: string, via: StoredBundle['via'], etag: string | null): Promise<UpdateResult> {
    const { updates, share } = this.options;
    const opened = openBundle(text, updates!.publicKey, via === 'download' ? updates!.config.url : 'fleet bundle');
    if (!opened.ok) return this.record(opened.reason, opened.message, via);
    const admission = admitBundle(opened.release, opened.digest, { version: this.current.version, digest: this.currentDigest }, Date.now());
    if (!admission.admit) {
      if (admission.reason === 'unchanged') {
        if (via === 'download') this.etag = etag;
        return this.record('unchanged', null, via);
      }
      return this.record(admission.reason, admission.message, via);
    }
    const previous = this.current.version;
    const receivedAt = new Date().toISOString();
    this.adopt(opened.release, opened.digest, via, receivedAt, via === 'download' ? etag : null);
    const stored: StoredBundle = { bundle: text, via, receivedAt, etag: this.etag };
    await writeFileAtomic(this.storedPath, `${JSON.stringify(stored)}\n`).catch((e: unknown) =>
      this.log.error({ file: this.storedPath, err: errorMessage(e) }, 'cannot keep the catalog bundle: a restart falls back to the bundled catalog'),
    );
    if (via === 'download') void share?.offer(text, opened.release.version).catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, 'cannot share the catalog bundle with the fleet'));
    this.log.info({ version: opened.release.version, previous, expires: opened.release.expires, receivedVia: via }, 'catalog bundle in force');
    this.emit('release', opened.release);
    return this.record('applied', null, via);
  }

  private adopt(release: CatalogRelease, digest: string, via: StoredBundle['via'], receivedAt: string, etag: string | null): void {
    this.current = release;
    this.currentDigest = digest;
    this.receivedVia = via;
    this.receivedAt = receivedAt;
    this.etag = etag;
  }

  private record(result: UpdateResult, error: string | null, via: StoredBundle['via'] = 'download'): UpdateResult {
    this.options.onResult?.(result);
    // A fleet bundle this gateway already has says nothing about the download's health.
    if (via === 'fleet' && result === 'unchanged') return result;
    this.lastCheck = new Date().toISOString();
    this.lastResult = result;
    this.lastError = error;
    if (error !== null) {
      const level = result === 'fetch-failed' ? 'warn' : 'error';
      this.log[level]({ result, receivedVia: via, version: this.current.version }, `catalog bundle not applied: ${error}; version ${this.current.version} stays in force`);
    }
    return result;
  }
}

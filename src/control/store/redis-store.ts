import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from 'redis';
import { PortcullisError, isPortcullisError } from '../../errors.js';
import type { CatalogShare } from '../../catalog/updater.js';
import type { Logger } from '../../observability/logger.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { parseState, type PolicyState } from '../state.js';
import type { PolicyStore, StoreHealth } from './types.js';

const KEY_CATALOG = 'portcullis:catalog:bundle';
const KEY_CATALOG_VERSION = 'portcullis:catalog:version';
const CATALOG_CHANNEL = 'portcullis:catalog:changes';
const KEY_STATE = 'portcullis:policy:state';
const KEY_VERSION = 'portcullis:policy:version';
const CHANNEL = 'portcullis:policy:changes';
/** How long start waits for Redis before enforcing the local copy of the fleet's policy. */
const START_WAIT_MS = 2_000;
const RECONNECT_MAX_DELAY_MS = 5_000;
/** A change that lost the race against another gateway's change is re-applied this often at most. */
const MAX_CONFLICT_RETRIES = 20;

/** Sets the state only if the stored version is still the one the change was computed from. */
const COMPARE_AND_SET = `
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1`;

/** Keeps a verified catalog bundle for the fleet only if it is newer than the one there. */
const OFFER_IF_NEWER = `
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1`;

export interface RedisStoreOptions {
  /** `store.redis`. */
  url: string;
  /** `store.path`: the local copy of the fleet's policy lives here, for starts while Redis is down. */
  dir: string;
  logger: Logger;
}

type Client = ReturnType<typeof createClient>;

/**
 * The fleet store: the policy state and its version in Redis, every change a compare-and-set
 * on the version (no lost updates between gateways) followed by a publish; each gateway
 * subscribes and loads the new state. A gateway that reconnects reloads the state, so changes
 * missed while away arrive then. While Redis is down, gateways keep enforcing the last state
 * they had, writes fail with PCL_ERR_STORE_UNAVAILABLE, and the client reconnects with
 * backoff. A local copy (`fleet-policy.json` under store.path) lets a gateway restarted during
 * an outage enforce the fleet's last policy instead of the config's defaults.
 */
export class RedisStore extends EventEmitter<{ state: [PolicyState] }> implements PolicyStore {
  readonly kind = 'redis';
  private readonly client: Client;
  private readonly subscriber: Client;
  private readonly cachePath: string;
  private readonly log: Logger;
  private current: PolicyState | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private cacheWrite: Promise<void> = Promise.resolve();
  private downSince: number | null = Date.now();
  private lastError = 'not connected yet';
  private isClosed = false;
  private readonly catalogListeners: ((bundle: string) => void)[] = [];
  /** This gateway's last offered bundle, offered again after an outage (a no-op when the fleet has it). */
  private catalogOffer: { bundle: string; version: number } | null = null;

  /**
   * Verified catalog bundles, shared: a gateway that accepts a newer bundle stores it here (only
   * if newer than the fleet's) and publishes; every gateway reads it on the publish and after a
   * reconnect, verifies it itself, and takes it when newer. The fleet converges on the highest.
   */
  readonly catalogShare: CatalogShare = {
    offer: async (bundle, version) => {
      this.catalogOffer = { bundle, version };
      await this.client.eval(OFFER_IF_NEWER, { keys: [KEY_CATALOG, KEY_CATALOG_VERSION], arguments: [String(version), bundle, CATALOG_CHANNEL] });
    },
    latest: () => this.client.get(KEY_CATALOG),
    onBundle: (listener) => {
      this.catalogListeners.push(listener);
    },
  };

  constructor(private readonly options: RedisStoreOptions) {
    super();
    this.log = options.logger.child({ component: 'store' });
    this.cachePath = join(options.dir, 'fleet-policy.json');
    const socket = { connectTimeout: START_WAIT_MS, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** Math.min(retries, 6), RECONNECT_MAX_DELAY_MS) };
    // Commands fail at once while disconnected instead of queueing: a write then gets a 503.
    this.client = createClient({ url: options.url, socket, disableOfflineQueue: true });
    this.subscriber = this.client.duplicate();
    for (const client of [this.client, this.subscriber]) {
      client.on('error', (e: Error) => this.markDown(e.message));
    }
    this.client.on('ready', () => {
      if (this.downSince !== null) this.log.info({ downMs: Date.now() - this.downSince }, 'redis connected');
      this.downSince = null;
    });
    // (Re)subscribed: changes published while away were missed; read the state (and the catalog) again.
    this.subscriber.on('ready', () => {
      this.resync();
      this.announceCatalog();
    });
  }

  async load(initial: PolicyState): Promise<PolicyState> {
    const connected = Promise.all([this.client.connect(), this.subscriber.connect()]).then(() => true);
    connected.catch((e: unknown) => this.markDown(e instanceof Error ? e.message : String(e)));
    const isConnected = await Promise.race([connected.catch(() => false), sleep(START_WAIT_MS).then(() => false)]);
    if (isConnected) {
      await this.subscribe();
      let state = await this.read();
      if (state === null) {
        await this.compareAndSet(0, initial);
        state = (await this.read()) ?? initial;
      }
      this.adopt(state);
      return state;
    }
    // Keep trying in the background; the subscription is set up once connected.
    void connected.then(() => this.subscribe()).catch(() => undefined);
    const cached = await readFile(this.cachePath, 'utf8').then(
      (text) => parseState(text, this.cachePath),
      () => null,
    );
    this.log.warn({ reason: this.lastError, revision: cached?.version ?? null }, cached === null ? 'redis unreachable: enforcing the config until it is back' : 'redis unreachable: enforcing the local copy of the fleet policy');
    this.current = cached ?? initial;
    return this.current;
  }

  update<T>(change: (current: PolicyState) => { state: PolicyState; result: T }): Promise<{ state: PolicyState; result: T }> {
    const run = this.queue.then(async () => {
      for (let attempt = 0; attempt < MAX_CONFLICT_RETRIES; attempt++) {
        const current = await this.read().catch((e: unknown) => {
          throw this.unavailable(e);
        });
        if (current === null) {
          await this.reseed().catch((e: unknown) => {
            throw this.unavailable(e);
          });
          continue;
        }
        const next = change(current);
        const isSet = await this.compareAndSet(current.version, next.state).catch((e: unknown) => {
          throw this.unavailable(e);
        });
        if (isSet) {
          // Our own change: the caller enforces it; announcing it would report it as another gateway's.
          this.adopt(next.state, false);
          return next;
        }
      }
      throw new PortcullisError('PCL_ERR_STORE_UNAVAILABLE', 'too many concurrent changes from other gateways; try again');
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  health(): StoreHealth {
    if (this.downSince === null && this.client.isReady) return { isHealthy: true, reason: null };
    const version = this.current?.version ?? null;
    return { isHealthy: false, reason: `redis unreachable (${this.lastError}); enforcing policy version ${version ?? 'from config'}` };
  }

  async close(): Promise<void> {
    this.isClosed = true;
    await this.queue;
    await this.cacheWrite;
    for (const client of [this.subscriber, this.client]) {
      if (client.isOpen) await client.close().catch(() => client.destroy());
      else client.destroy();
    }
  }

  private async subscribe(): Promise<void> {
    await this.subscriber.subscribe(CHANNEL, () => this.resync());
    await this.subscriber.subscribe(CATALOG_CHANNEL, () => this.announceCatalog());
  }

  /** Hands the fleet's catalog bundle to the listeners; first offers this gateway's own again (it may have been offered while Redis was away). */
  private announceCatalog(): void {
    if (this.isClosed || !this.client.isReady || this.catalogListeners.length === 0) return;
    const offer = this.catalogOffer;
    void (offer === null ? Promise.resolve() : this.catalogShare.offer(offer.bundle, offer.version))
      .then(() => this.client.get(KEY_CATALOG))
      .then((bundle) => {
        if (bundle !== null) for (const listener of this.catalogListeners) listener(bundle);
      })
      .catch((e: unknown) => this.markDown(e instanceof Error ? e.message : String(e)));
  }

  private async read(): Promise<PolicyState | null> {
    const text = await this.client.get(KEY_STATE);
    return text === null ? null : parseState(text, `redis ${KEY_STATE}`);
  }

  private async compareAndSet(expectedVersion: number, state: PolicyState): Promise<boolean> {
    const reply = await this.client.eval(COMPARE_AND_SET, {
      keys: [KEY_STATE, KEY_VERSION],
      arguments: [String(expectedVersion), JSON.stringify(state), String(state.version), CHANNEL],
    });
    return reply === 1;
  }

  /** Takes a state read from Redis as this gateway's own, announces it when it is news. */
  private adopt(state: PolicyState, isAnnounced = true): void {
    const isNews = isAnnounced && (this.current === null || this.current.version !== state.version);
    this.current = state;
    this.cacheWrite = this.cacheWrite
      .then(() => writeFileAtomic(this.cachePath, `${JSON.stringify(state)}\n`))
      .catch((e: unknown) => this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cannot write the local copy of the fleet policy'));
    if (isNews) this.emit('state', state);
  }

  private resync(): void {
    if (this.isClosed || !this.client.isReady) return;
    // Through the queue, so a resync never interleaves with this gateway's own change.
    this.queue = this.queue
      .then(async () => {
        const state = await this.read();
        if (state === null) await this.reseed();
        else if (this.current === null || state.version !== this.current.version) this.adopt(state);
      })
      .catch((e: unknown) => {
        if (isPortcullisError(e)) this.log.error({ err: e.message }, 'the policy state in Redis is unusable; keeping the current policy');
        else this.markDown(e instanceof Error ? e.message : String(e));
      });
  }

  /**
   * Redis answers but holds no policy (wiped, or a new instance without persistence): the
   * fleet's policy must not vanish with it, so this gateway writes back the state it enforces.
   * Only when the key is still missing (compare-and-set from version 0): one gateway wins.
   */
  private async reseed(): Promise<void> {
    if (this.current === null) throw new Error('the policy state is missing from Redis');
    if (await this.compareAndSet(0, this.current)) this.log.warn({ revision: this.current.version }, 'redis held no policy: wrote back the policy this gateway enforces');
  }

  private markDown(reason: string): void {
    this.lastError = reason;
    if (this.downSince === null) {
      this.downSince = Date.now();
      this.log.warn({ reason }, 'redis unreachable: keeping the current policy, writes refused until it is back');
    }
  }

  private unavailable(e: unknown): PortcullisError {
    if (isPortcullisError(e)) return e;
    return new PortcullisError('PCL_ERR_STORE_UNAVAILABLE', `redis: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

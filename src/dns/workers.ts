import { Worker } from 'node:worker_threads';
import type { AppId, CatalogDocuments, CatalogRelease, ReleaseMeta } from '../catalog/index.js';
import type { DnsConfig } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { DnsWorkerReport } from '../observability/metrics.js';
import type { AdminRule, BlockEvent, ListEntries, PolicyEngine, SwapEvent } from '../policy/index.js';

/** What a worker thread starts from. */
export interface DnsWorkerData {
  /** 1..workers-1; 0 is the main thread. */
  index: number;
  /** The main thread's DNS config, listening on the port the main thread bound. */
  dns: DnsConfig;
  apps: { enabled: AppId[]; extended: AppId[] };
  rules: readonly AdminRule[];
  lists: readonly ListEntries[];
  catalog: WorkerCatalog;
  logLevel: string;
}

/** The catalog in force as plain documents: the worker compiles its own copy. */
export interface WorkerCatalog {
  documents: CatalogDocuments;
  meta: ReleaseMeta;
  origin: CatalogRelease['origin'];
}

function workerCatalog(release: CatalogRelease): WorkerCatalog {
  return { documents: release.documents, meta: { version: release.version, issued: release.issued, expires: release.expires }, origin: release.origin };
}

export type ToDnsWorker =
  | { type: 'apps'; enabled: AppId[]; extended: AppId[] }
  | { type: 'rules'; rules: readonly AdminRule[] }
  | { type: 'lists'; lists: readonly ListEntries[] }
  | ({ type: 'catalog' } & WorkerCatalog)
  | { type: 'close' };

type FromDnsWorker =
  | { type: 'ready'; port: number }
  | ({ type: 'report' } & DnsWorkerReport)
  | { type: 'blocked'; blocks: BlockEvent[] };

export interface DnsWorkerPoolOptions {
  /** Threads besides the main one. */
  extra: number;
  dns: DnsConfig;
  engine: PolicyEngine;
  /** The catalog release in force (the engine holds it compiled). */
  catalog: () => CatalogRelease;
  logLevel: string;
  logger: Logger;
  onReport: (worker: number, report: DnsWorkerReport) => void;
  onBlocked: (block: BlockEvent) => void;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

/**
 * dns.workers: DNS over UDP on more threads than one, each with the whole resolver (policy,
 * cache, upstreams) and a socket on the same port (SO_REUSEPORT). Policy changes made on the
 * main thread are sent to every worker as they land; counts and blocks come back.
 */
export class DnsWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly options: DnsWorkerPoolOptions;
  private readonly onSwap = (event: SwapEvent): void => this.forward(event);

  constructor(options: DnsWorkerPoolOptions) {
    this.options = options;
  }

  async start(): Promise<void> {
    const { engine, extra } = this.options;
    const apps = engine.current.apps;
    const started: Promise<void>[] = [];
    for (let index = 1; index <= extra; index++) {
      const data: DnsWorkerData = {
        index,
        dns: this.options.dns,
        apps: { enabled: [...apps.enabled], extended: [...apps.extended] },
        rules: engine.rules,
        lists: engine.listEntries,
        catalog: workerCatalog(this.options.catalog()),
        logLevel: this.options.logLevel,
      };
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: data });
      this.workers.push(worker);
      started.push(this.watch(worker, index));
    }
    engine.on('swap', this.onSwap);
    try {
      await Promise.all(started);
    } catch (e: unknown) {
      await this.close();
      throw e;
    }
  }

  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    this.options.engine.off('swap', this.onSwap);
    await Promise.all(
      this.workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => void worker.terminate().then(() => resolve()), STOP_TIMEOUT_MS);
            worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            worker.postMessage({ type: 'close' } satisfies ToDnsWorker);
          }),
      ),
    );
    this.workers.length = 0;
  }

  private watch(worker: Worker, index: number): Promise<void> {
    const log = this.options.logger.child({ component: 'dns', worker: index });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dns worker ${index} did not start in ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      worker.on('message', (message: FromDnsWorker) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          log.info({ port: message.port }, 'dns worker listening');
          resolve();
        } else if (message.type === 'report') this.options.onReport(index, message);
        else for (const block of message.blocks) this.options.onBlocked(block);
      });
      worker.once('error', (err) => {
        clearTimeout(timer);
        log.error({ err: err.message }, 'dns worker failed');
        reject(err);
      });
      worker.once('exit', (code) => {
        clearTimeout(timer);
        if (code !== 0) log.error({ code }, 'dns worker exited');
        reject(new Error(`dns worker ${index} exited with ${code}`));
      });
    });
  }

  private forward(event: SwapEvent): void {
    const { engine } = this.options;
    let message: ToDnsWorker;
    if (event.reason === 'apps') message = { type: 'apps', enabled: [...engine.current.apps.enabled], extended: [...engine.current.apps.extended] };
    else if (event.reason === 'rules') message = { type: 'rules', rules: engine.rules };
    else if (event.reason === 'catalog') message = { type: 'catalog', ...workerCatalog(this.options.catalog()) };
    else message = { type: 'lists', lists: engine.listEntries };
    for (const worker of this.workers) worker.postMessage(message);
  }
}

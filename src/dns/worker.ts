/**
 * A DNS worker thread (dns.workers > 1): its own policy engine, cache and upstream pool, and a
 * UDP socket on the main thread's port (SO_REUSEPORT: the kernel spreads clients over the
 * threads). The main thread keeps TCP, DoT, DoH, the store and the admin API, sends every
 * policy change here, and receives this thread's counts and blocks.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { compileRelease, type AppId } from '../catalog/index.js';
import { createLogger } from '../observability/logger.js';
import { HotHistogram } from '../observability/hot-metrics.js';
import { DNS_DURATION_BUCKETS, DNS_QUERY_SERIES, dnsQueryIndex } from '../observability/metrics.js';
import { PolicyEngine, type BlockEvent } from '../policy/index.js';
import { DnsServer } from './server.js';
import type { Problem } from '../config/index.js';
import type { DnsWorkerData, ToDnsWorker, WorkerCatalog } from './workers.js';

const REPORT_EVERY_MS = 1_000;
/** Blocks are passed on in batches, at least this often. */
const BLOCKS_EVERY_MS = 100;

const data = workerData as DnsWorkerData;
const port = parentPort!;
const logger = createLogger({ level: data.logLevel }).child({ worker: data.index });

/** The main thread checked these documents before sending them; a problem here is a bug. */
function compileCatalog(message: WorkerCatalog): NonNullable<ReturnType<typeof compileRelease>> {
  const problems: Problem[] = [];
  const release = compileRelease(message.documents, message.meta, message.origin, 'catalog from the main thread', problems);
  if (release === null) throw new Error(`catalog from the main thread does not compile: ${problems.map((p) => p.message).join('; ')}`);
  return release;
}

const release = compileCatalog(data.catalog);
const appState = (apps: { enabled: readonly AppId[]; extended: readonly AppId[] }) => ({ enabled: new Set(apps.enabled), extended: new Set(apps.extended) });
const engine = new PolicyEngine({ catalog: release.catalog, categories: release.categories, apps: appState(data.apps), adminRules: data.rules });
await engine.setLists(data.lists);

let queries = new Float64Array(DNS_QUERY_SERIES);
const durations = new HotHistogram({ name: 'worker_dns_duration', help: 'drained to the main thread', buckets: DNS_DURATION_BUCKETS, registry: new Registry() });
let blocks: BlockEvent[] = [];

const server = await DnsServer.create({
  config: data.dns,
  policy: engine,
  logger,
  udpOnly: true,
  reusePort: true,
  onResult: (result, protocol, startedMs) => {
    queries[dnsQueryIndex(result, protocol)]!++;
    if (result !== 'dropped') durations.observe((performance.now() - startedMs) / 1000);
  },
  onBlocked: (block) => {
    blocks.push(block);
  },
});
const addresses = await server.listen();

const report = setInterval(() => {
  port.postMessage({ type: 'report', queries, durations: durations.drain() });
  queries = new Float64Array(DNS_QUERY_SERIES);
}, REPORT_EVERY_MS);
const passBlocks = setInterval(() => {
  if (blocks.length === 0) return;
  port.postMessage({ type: 'blocked', blocks });
  blocks = [];
}, BLOCKS_EVERY_MS);

port.on('message', (message: ToDnsWorker) => {
  switch (message.type) {
    case 'apps':
      engine.setApps(appState(message));
      break;
    case 'rules':
      engine.setAdminRules(message.rules);
      break;
    case 'lists':
      void engine.setLists(message.lists);
      break;
    case 'catalog': {
      const next = compileCatalog(message);
      engine.setCatalog(next.catalog, next.categories);
      break;
    }
    case 'close':
      clearInterval(report);
      clearInterval(passBlocks);
      void server.close().then(() => {
        port.postMessage({ type: 'report', queries, durations: durations.drain() });
        port.close();
      });
      break;
  }
});
port.postMessage({ type: 'ready', port: addresses.udp.port, version: engine.version });

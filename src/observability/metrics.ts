import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { APP_IDS } from '../catalog/index.js';
import type { BlockEvent, PolicyEngine } from '../policy/index.js';

/** Every metric portcullis exports is declared here, on one registry. */
export interface Metrics {
  readonly registry: Registry;
  /** Counts one block (DNS, TLS, HTTP, IP layer). */
  blocked(block: BlockEvent): void;
}

export function createMetrics(engine: PolicyEngine): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_' });
  const blockedTotal = new Counter({ name: 'portcullis_blocked_total', help: 'Connections and queries blocked, by app and layer', labelNames: ['app', 'layer'] as const, registers: [registry] });
  // Children resolved once: the hot path increments without building label objects.
  const children = new Map<string, Counter.Internal>();
  for (const app of [...APP_IDS, 'custom'] as const) {
    for (const layer of ['dns', 'tls', 'http', 'ip'] as const) children.set(`${app}/${layer}`, blockedTotal.labels({ app, layer }));
  }
  new Gauge({
    name: 'portcullis_policy_version',
    help: 'Version of the policy snapshot in force',
    registers: [registry],
    collect() {
      this.set(engine.version);
    },
  });
  new Gauge({
    name: 'portcullis_policy_rules',
    help: 'Rule entries in force, by app (custom: admin and list rules without an app)',
    labelNames: ['app'] as const,
    registers: [registry],
    collect() {
      const counts = engine.current.ruleCounts();
      for (const app of [...APP_IDS, 'custom'] as const) {
        const c = counts.get(app);
        this.set({ app }, c === undefined ? 0 : c.domains + c.cidrs + c.ports);
      }
    },
  });
  return {
    registry,
    blocked(block) {
      children.get(`${block.app ?? 'custom'}/${block.layer}`)?.inc();
    },
  };
}

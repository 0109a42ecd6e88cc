import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../../src/observability/hot-metrics.js';

const BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The exposition lines of one metric family, without HELP/TYPE. */
function seriesOf(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('HotHistogram', () => {
  it('renders exactly what prom-client Histogram renders for the same observations', async () => {
    const ours = new Registry();
    const reference = new Registry();
    const hot = new HotHistogram({ name: 'x_seconds', help: 'h', buckets: BUCKETS, registry: ours });
    const plain = new Histogram({ name: 'x_seconds', help: 'h', buckets: BUCKETS, registers: [reference] });
    // Values on bucket edges, between them, below the first and above the last.
    const values = [0, 0.0001, 0.00025, 0.0003, 0.001, 0.0015, 0.002, 0.3, 1, 2.5, 2.6, 100, ...Array.from({ length: 500 }, (_, i) => (i * 0.0137) % 3)];
    for (const v of values) {
      hot.observe(v);
      plain.observe(v);
    }
    expect(seriesOf(await ours.metrics())).toEqual(seriesOf(await reference.metrics()));
    expect(await ours.metrics()).toContain('# TYPE x_seconds histogram');
  });

  it('reset() empties it', async () => {
    const registry = new Registry();
    const hot = new HotHistogram({ name: 'y_seconds', help: 'h', buckets: [1], registry });
    hot.observe(0.5);
    hot.reset();
    expect(seriesOf(await registry.metrics())).toEqual(['y_seconds_bucket{le="1"} 0', 'y_seconds_bucket{le="+Inf"} 0', 'y_seconds_sum 0', 'y_seconds_count 0']);
  });
});

describe('HotCounter', () => {
  it('counts by series and brings the counter up to date at every scrape', async () => {
    const registry = new Registry();
    const series = [
      { layer: 'dns', app: 'line' },
      { layer: 'tls', app: 'line' },
    ];
    const hot = new HotCounter({ name: 'z_total', help: 'h', labelNames: ['layer', 'app'] as const, series, registry });
    hot.inc(0);
    hot.inc(0);
    hot.inc(1, 5);
    expect(seriesOf(await registry.metrics())).toEqual(['z_total{layer="dns",app="line"} 2', 'z_total{layer="tls",app="line"} 5']);
    hot.inc(0);
    // A second scrape adds only what happened since the first.
    expect(seriesOf(await registry.metrics())).toEqual(['z_total{layer="dns",app="line"} 3', 'z_total{layer="tls",app="line"} 5']);
    expect(await registry.metrics()).toContain('# TYPE z_total counter');
  });

  it('declares every series at zero before anything happened', async () => {
    const registry = new Registry();
    new HotCounter({ name: 'w_total', help: 'h', labelNames: ['kind'] as const, series: [{ kind: 'a' }, { kind: 'b' }], registry });
    expect(seriesOf(await registry.metrics())).toEqual(['w_total{kind="a"} 0', 'w_total{kind="b"} 0']);
  });
});
